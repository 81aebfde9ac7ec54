"""What a benchmark ran on: one line for the machine, and the commit of the code."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        # The vector ISA torch's CPU kernels use (e.g. AVX2, AVX512): float results, and so
        # a --check's exact match, hold only between machines with the same.
        cpu += f" (torch CPU kernels: {torch.backends.cpu.get_cpu_capability()})"
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, Python {platform.python_version()}"


def commit() -> str:
    """The short hash of the code's commit ('' if unknown): ``ALSEG_COMMIT`` for a
    snapshot outside the repository, else ``git rev-parse`` beside this file."""
    if os.environ.get("ALSEG_COMMIT"):
        return os.environ["ALSEG_COMMIT"]
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip() if out.returncode == 0 else ""


def code() -> str:
    """The commit as a result names it: ``git <hash>``, or ``unknown commit``."""
    return f"git {c}" if (c := commit()) else "unknown commit"


def footer(start: float | None, command: str, note: str = "") -> str:
    """A result's last lines: the machine, the commit, the wall time since ``start``
    (with ``note``; none when ``start`` is None: a report of runs timed elsewhere) and
    the command that made it."""
    minutes = None if start is None else (time.perf_counter() - start) / 60
    wall = "" if minutes is None else f" Wall time: {minutes:.1f} min{note}."
    return f"\nMachine: {describe()}. Code: {code()}.{wall}\nCommand: `{command}`\n"


def write_table(lines: list[str], out: Path, script: str, start: float, note: str = "") -> str:
    """``lines`` plus the machine, the commit, the wall time since ``start`` (with
    ``note``) and the command line of ``bench/<script>``: printed and written to ``out``."""
    command = f".venv/bin/python bench/{script} {' '.join(sys.argv[1:])}"
    text = "\n".join([*lines, footer(start, command, note)])
    print(text)
    out.write_text(text)
    return text
