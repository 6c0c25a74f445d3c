"""Facts about a local process by PID: whether it runs, and whether it is a fluvial process.

``fluvial cluster`` decides with these which members are up, and the tests and bench scripts
that start clusters use the same two answers before they signal anything.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["is_fluvial_process", "pid_alive"]


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` runs. A zombie does not count: it answers ``kill(pid, 0)`` until its
    parent (often an init that may never reap it) collects it. ``None`` and 0 are not processes."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def is_fluvial_process(pid: int) -> bool:
    """Whether ``pid`` runs a fluvial command line: the guard against PID reuse before a kill."""
    try:
        return b"fluvial" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
