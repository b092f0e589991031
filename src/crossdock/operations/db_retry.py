"""Trying an action again while the database turns it away for load or contention.

PostgreSQL refuses connections beyond ``max_connections`` (fifty triggers started
together, with a scheduler and workers holding connections of their own, can meet
that); SQLite answers "database is locked" to a second writer whose snapshot went stale;
PostgreSQL breaks deadlocks by failing one side. Nothing was written in any of these
cases, so trying the whole transaction again is safe.
"""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from sqlalchemy.exc import OperationalError

from crossdock.database import DatabaseError

T = TypeVar("T")

#: Seconds an action keeps trying a database that turns it away.
PATIENCE = 30.0
#: First pause between attempts (doubling, jittered, at most MAX_PAUSE).
FIRST_PAUSE = 0.1
MAX_PAUSE = 2.0
_TRANSIENT_SIGNS = ("too many clients", "remaining connection slots are reserved",
                    "the database system is starting up", "database is locked", "database table is locked",
                    "deadlock detected", "could not serialize access")


def patiently(attempt: Callable[[], T], *, patience: float = PATIENCE) -> T:
    """``attempt()``, again after a jittered pause while the database turns it away for load."""
    deadline = time.monotonic() + patience
    pause = FIRST_PAUSE
    while True:
        try:
            return attempt()
        except (DatabaseError, OperationalError) as exc:
            transient = any(sign in str(exc).lower() for sign in _TRANSIENT_SIGNS)
            jittered = pause * random.uniform(0.5, 1.5)
            if not transient or time.monotonic() + jittered > deadline:
                raise  # the jittered pause, not the nominal one, decides: patience never overruns
        time.sleep(jittered)
        pause = min(pause * 2, MAX_PAUSE)
