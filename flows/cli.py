"""``alseg-flows``: serve the al-cycle deployment, and deliver human labels to a waiting run.

alseg-flows serve [--repo .] [--cron "0 2 * * *"]     # runs the deployment's worker
alseg-flows deliver <flow-run-id> <url> [--format F]  # resume a run waiting for labels
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from uuid import UUID


def cmd_serve(args: argparse.Namespace) -> None:
    from prefect import serve

    from flows.deployment import build_deployment

    cron = None if args.no_schedule else args.cron
    serve(build_deployment(args.repo, cron=cron), limit=args.limit)


def cmd_deliver(args: argparse.Namespace) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    from alseg_core import storage

    if args.format == "masks" and not storage.glob(storage.join(args.url, "*.png")):
        raise ValueError(f"{args.url}: no <image_id>.png masks to deliver")
    if args.format != "masks" and not storage.exists(args.url):
        raise FileNotFoundError(f"{args.url}: no such file or folder ({args.format} export)")
    run_id = UUID(args.flow_run)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    if run.state is None or not run.state.is_paused():
        state = run.state.name if run.state else "unknown"
        raise ValueError(f"flow run {args.flow_run} is {state!r}, not waiting for labels")
    resume_flow_run(run_id, run_input={"url": args.url, "format": args.format})
    print(
        f"delivered {args.url} ({args.format}) to flow run {args.flow_run}; it resumes, "
        "imports and merges the labels"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alseg-flows", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve the al-cycle/cityscapes deployment")
    p.add_argument("--repo", default=".", help="the DVC/git repository the rounds run in")
    p.add_argument("--cron", default="0 2 * * *", help="schedule (default nightly at 02:00)")
    p.add_argument("--no-schedule", action="store_true", help="only run when triggered")
    p.add_argument("--limit", type=int, default=1, help="flow runs this process runs at once")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("deliver", help="resume a flow run waiting for labels")
    p.add_argument("flow_run", help="id of the suspended flow run")
    p.add_argument(
        "url",
        help="where the labels are (path or s3:// URL): a folder of "
        "<image_id>.png masks, or the annotation tool's export file or archive",
    )
    p.add_argument(
        "--format",
        default="masks",
        choices=["masks", "label-studio", "cvat-mask", "cityscapes", "coco"],
        help="what the URL holds (default: masks)",
    )
    p.set_defaults(func=cmd_deliver)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"alseg-flows {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
