"""Progress a person can watch: a bar on a terminal, a line every few seconds elsewhere.

``progress_bar(total, desc, enabled=...)`` returns a tqdm bar when stderr is a terminal,
and otherwise (a log file, ``make demo | tee``, a DVC stage inside a Prefect task) an
object with the same ``update`` / ``set_postfix`` / ``close`` that prints
``desc: done/total unit [elapsed, eta]`` at most every ``LINE_EVERY_S`` seconds and once
at the end, so a captured log shows the step moving without a line per item.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

#: Seconds between progress lines off a terminal (``ALSEG_PROGRESS_EVERY`` overrides).
LINE_EVERY_S = float(os.environ.get("ALSEG_PROGRESS_EVERY", "15"))


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressLines:
    """Progress as plain lines on stderr, at most one per ``every`` seconds."""

    def __init__(self, total: int, desc: str, unit: str, every: float | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.every = LINE_EVERY_S if every is None else every
        self.done = 0
        self.postfix = ""
        self.start = self.last = time.perf_counter()
        self.printed = False

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every and self.done < self.total:
            self._line(now)

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in kw.items())

    def close(self) -> None:
        now = time.perf_counter()
        # The last line, unless the step was over before a line was due (it stays quiet).
        if self.printed or now - self.start >= self.every:
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        eta = ""
        if 0 < self.done < self.total:
            eta = f", ~{elapsed / self.done * (self.total - self.done):.0f}s left"
        extra = f", {self.postfix}" if self.postfix else ""
        print(
            f"{self.desc}: {self.done}/{self.total} {self.unit} [{elapsed:.0f}s{eta}{extra}]",
            file=sys.stderr,
            flush=True,
        )
        self.last, self.printed = now, True


def progress_bar(
    total: int, desc: str, *, enabled: bool, unit: str = "img", leave: bool = True
) -> Any:
    """A tqdm bar on a terminal, :class:`ProgressLines` otherwise; silent if not enabled."""
    if not enabled:
        return _Silent()
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=leave)
    return ProgressLines(total, desc, unit)
