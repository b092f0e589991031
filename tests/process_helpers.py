"""Watching processes from tests: has a pid exited, waiting for a condition, ending workers."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def killed_when_done(workers):
    """Yield ``workers`` (``EmbeddedWorkers``) and end them at once, no warm shutdown, when the block ends.

    For tests whose runs have all ended inside the block: no try is left for a warm
    shutdown to let finish, so it proves nothing, yet on the serverless broker Celery's
    warm shutdown of an idle worker takes about six seconds (its synchronous consumer
    loop sees the signal only at its next two-second drain timeout, then closes the
    pool) and about two on Redis. ``stop(timeout=0)`` signals, kills each worker's
    process group at once and removes the workers' pid and ready files, as a warm stop does.
    """
    try:
        yield workers
    finally:
        workers.stop(timeout=0)
