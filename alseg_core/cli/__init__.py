"""The ``alseg`` command line: a thin layer over the pipeline steps.

Options default to the values in params.yaml (``--params``, default ./params.yaml when
it exists); an option given on the command line overrides its params key.
"""

from __future__ import annotations

import argparse
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
    faults.arm_from_environment(args.command if args.command != "step" else args.step)
    try:
        with workspace_lock(_workspace(args), args.command):
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
