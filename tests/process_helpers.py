"""Watching processes from tests: has a pid exited, and waiting for a condition."""

from __future__ import annotations

import time


def process_gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_for(predicate, *, limit: float = 60.0) -> bool:
    """Poll ``predicate`` until it is true or ``limit`` seconds pass; its last answer."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
