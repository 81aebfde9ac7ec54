"""Fault injection for the crash tests: kill this process inside its n-th write.

``ALSEG_TEST_KILL_AT_WRITE=<command>:<n>`` makes ``alseg <command>`` SIGKILL itself in
its n-th write, after the data is on disk under a temporary name and before the rename
(local), or before the upload (object store). Never set in normal use; storage only
calls a hook, so the seam costs nothing when unarmed.
"""

from __future__ import annotations

import os
import signal

from alseg_core import storage

ENV_VAR = "ALSEG_TEST_KILL_AT_WRITE"


def arm(kill_at_write: int) -> None:
    """SIGKILL this process in its ``kill_at_write``-th write from now."""
    writes = 0

    def hook(_url: str) -> None:
        nonlocal writes
        writes += 1
        if writes >= kill_at_write:
            os.kill(os.getpid(), signal.SIGKILL)

    storage.before_commit = hook


def arm_from_environment(command: str) -> None:
    """Arm when the environment names ``command`` (``<command>:<n>``)."""
    value = os.environ.get(ENV_VAR, "")
    if value.startswith(f"{command}:"):
        arm(int(value.split(":", 1)[1]))
