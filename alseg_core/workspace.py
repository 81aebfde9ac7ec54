"""One writer per workspace: an exclusive lock, and cleanup of what a killed writer left.

A workspace is the folder that holds ``params.yaml`` (the DVC repository root in the
pipeline). Every ``alseg`` command that writes takes ``<workspace>/.alseg/lock`` with
``flock``: a second process on the same workspace is refused with a message naming the
holder. The kernel releases the lock when its process dies, even by SIGKILL, so a
crashed run never leaves a stale lock behind.

Atomic writes (``storage``) go through temporary names next to their targets
(``.<name>.<random>.tmp``, and ``.old`` for replaced folders). A process killed in the
middle of such a write leaves that temporary behind; the next process that takes the
lock removes those of the outputs it is about to write, which is safe because no other
alseg writer can be running.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_DIR = ".alseg"
_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{6,32}\.(tmp|old)$")


class WorkspaceBusy(RuntimeError):
    """Another alseg process holds the workspace lock."""


@contextmanager
def workspace_lock(root: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold the workspace's exclusive lock while the block runs; yields the lock path.

    Raises :class:`WorkspaceBusy` at once (no waiting) when another process holds it.
    """
    lock_dir = Path(root) / LOCK_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            raise WorkspaceBusy(
                f"{path}: another alseg process is working on this workspace ({holder}); "
                f"'alseg {command}' refused so that the two cannot corrupt its state. "
                "Run it again when that process has finished."
            ) from None
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, alseg {command}, since {now}\n".encode(), 0)
        yield path
    finally:
        if held:  # a refused attempt must not erase the holder's note
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
        os.close(fd)  # closing releases the flock


def stale_temporaries(targets: Iterable[str | os.PathLike]) -> list[Path]:
    """Temporaries of interrupted atomic writes of ``targets`` (local output paths).

    For a target ``X``: siblings ``.X.<random>.tmp|old``, and when ``X`` is a folder,
    every such temporary inside it. Nothing else is ever matched.
    """
    found: set[Path] = set()
    for target in targets:
        target = Path(target)
        parent = target.parent
        if parent.is_dir():
            prefix = f".{target.name}."
            found.update(
                parent / n for n in os.listdir(parent) if n.startswith(prefix) and _TEMP.match(n)
            )
        if target.is_dir():
            for dirpath, dirnames, filenames in os.walk(target):
                for name in [*dirnames, *filenames]:
                    if _TEMP.match(name):
                        found.add(Path(dirpath) / name)
                dirnames[:] = [d for d in dirnames if not _TEMP.match(d)]
    return sorted(found)


def remove_stale_temporaries(targets: Iterable[str | os.PathLike]) -> list[Path]:
    """Delete what :func:`stale_temporaries` finds. Call only while holding the lock."""
    found = stale_temporaries(targets)
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found
