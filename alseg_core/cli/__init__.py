"""The ``alseg`` command line: a thin layer over the pipeline steps.

Options default to the values in params.yaml (``--params``, default ./params.yaml when
it exists); an option given on the command line overrides its params key.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from alseg_core.cli.commands import config
from alseg_core.cli.parser import build_parser as _build_parser

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    return _build_parser(__doc__.splitlines()[0].replace("``", ""))


def _workspace(args: argparse.Namespace) -> str:
    """The folder of the params file (default: the current folder)."""
    return os.path.dirname(os.path.abspath(args.params)) if args.params else os.getcwd()


def _local_outputs(args: argparse.Namespace) -> list[str]:
    """Local paths this command writes (their stale temporaries are cleaned first)."""
    from alseg_core.storage import is_remote

    outs = [getattr(args, k, None) for k in ("out", "json")]
    if args.command in ("run", "superpixels", "make-synthetic", "round", "step"):
        try:
            cfg = config(args)
        except (ValueError, FileNotFoundError):
            cfg = None  # the command itself reports the bad config
        if cfg is not None and args.command in ("run", "superpixels", "step"):
            outs.append(cfg.superpixels.store)
        if cfg is not None and args.command == "run":
            outs.append(cfg.al.out)
        if cfg is not None and args.command == "make-synthetic":
            outs.append(cfg.data.root)
        if args.command == "step":
            outs.append(args.base)
        if args.command == "round":
            outs.append(args.params or "params.yaml")
    return [o for o in outs if isinstance(o, str) and o and not is_remote(o)]


def _launch_data_parallel(argv: list[str], nproc: int) -> int:
    """``alseg train --nproc N``: the same command under ``torchrun`` with N processes."""
    import subprocess

    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "alseg_core.cli", *rest]  # fmt: skip
    print(f"alseg train: {nproc} data-parallel processes: {' '.join(cmd[1:])}", flush=True)
    return subprocess.run(cmd).returncode


def main(argv: Sequence[str] | None = None) -> int:
    from alseg_core import faults, storage
    from alseg_core.workspace import WorkspaceBusy, remove_stale_temporaries, workspace_lock

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "bench":  # writes only under its own --work folder
        args.args = [*extra, *args.args]
        args.func(args)
        return 0
    if args.command == "train" and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_data_parallel(list(sys.argv[1:] if argv is None else argv), args.nproc)
    faults.arm_from_environment(args.command if args.command != "step" else args.step)
    # Under torchrun, rank 0 holds the workspace for all ranks.
    follower = int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("RANK", "0") != "0"
    try:
        with (
            contextlib.nullcontext() if follower else workspace_lock(_workspace(args), args.command)
        ):
            if not follower:
                remove_stale_temporaries(_local_outputs(args))
            args.func(args)
    except WorkspaceBusy as err:
        print(f"alseg {args.command}: error: {err}", file=sys.stderr)
        return 3
    except storage.StorageUnavailable as err:
        print(
            f"alseg {args.command}: error: {err}. Nothing was changed; run the step again "
            "when storage is reachable.",
            file=sys.stderr,
        )
        return 4
    except (ValueError, FileNotFoundError, KeyError, PermissionError) as err:
        print(f"alseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"alseg {args.command}: interrupted. Finished work is kept and nothing half-written "
            "is (training keeps its last finished epoch); run the same command again to go on.",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
