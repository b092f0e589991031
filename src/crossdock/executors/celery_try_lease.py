"""Telling a dead worker's try from a long one: the scheduler's half of the try lease.

Each worker renews the STARTED record of every try it runs (see
:mod:`crossdock.executors.celery_claim_keeper`). The scheduler notes, on its own clock,
when it last saw each record change; a try whose record stayed the same for
``[celery] try_lease_timeout`` seconds has no live worker behind it. Comparing what the
scheduler saw, instead of the ``renewed_at`` time the worker wrote, makes the check
immune to clocks that differ between machines.
"""

from __future__ import annotations

import time
from typing import Any


class TryLeaseWatch:
    """Remembers when each running try's lease last moved.

    :param timeout: seconds without a renewal after which a try counts as lost; 0 or
        less turns the watch off.
    """

    def __init__(self, *, timeout: float):
        self.timeout = timeout
        self._seen: dict[str, tuple[Any, float]] = {}

    def expired(self, started: dict[str, Any]) -> list[str]:
        """Task ids among ``started`` (id -> STARTED meta) whose lease stopped moving.

        Records without a ``renewed_at`` (written by a worker without leases) never expire
        here; the ping check covers those.
        """
        if self.timeout <= 0:
            self._seen.clear()
            return []
        now = time.monotonic()
        seen: dict[str, tuple[Any, float]] = {}
        lost = []
        for task_id, meta in started.items():
            if not isinstance(meta, dict) or meta.get("renewed_at") is None:
                continue
            mark = (meta.get("claim"), meta.get("renewed_at"))
            previous = self._seen.get(task_id)
            since = previous[1] if previous is not None and previous[0] == mark else now
            seen[task_id] = (mark, since)
            if now - since >= self.timeout:
                lost.append(task_id)
        self._seen = seen
        return lost

    def forget(self, task_id: str) -> None:
        self._seen.pop(task_id, None)
