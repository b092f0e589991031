"""Stand-ins the executor tests share: a task instance without a database, a scheduler loop driver."""

from __future__ import annotations

import time

#: Upper bound for waits on real processes; a test ends as soon as the awaited thing happens.
WAIT_LIMIT = 120.0


class FakeTI:
    """What an executor reads from a task instance; the scheduler is not part of these tests."""

    def __init__(self, key, external_executor_id=None):
        self.key = key
        self.external_executor_id = external_executor_id
        self.executor_config = None


def loop_until(job, predicate, what: str, *, limit: float = WAIT_LIMIT) -> None:
    """Step the scheduler ``job`` until ``predicate()`` holds; fail naming ``what`` after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        job.loop_once()
        time.sleep(0.02)
