"""How a user's clear or mark reaches task instances without breaking design principle 1.

Only the active scheduler writes the state of the task instances it holds in memory;
anything else writing them would be overwritten by its next flush, or would race its
transitions. So a clear or mark takes one of two ways, decided in one transaction:

* **No scheduler is active** (nobody holds the lease: none ever ran, or the last one
  stopped cleanly): the rows are written directly, in a transaction that holds the free
  lease (:func:`~crossdock.scheduler.leadership.hold_free_lease`), so no scheduler can
  become active half-way; the next one to start loads what was written. A try that is
  still out on a worker or pod is not stopped this way (only an executor could), and
  its late report is ignored because its task instance is no longer queued or running.
* **A scheduler holds the lease**: a :class:`~crossdock.models.state_request.StateRequest`
  row per run is written, and the scheduler applies it in its next loop step (see
  :mod:`crossdock.scheduler.state_requests`): through its task table for the runs it
  holds (stopping tries through their executors), straight to the rows for the runs it
  does not (finished or still queued). A lease held by a scheduler that died keeps the
  requests until the scheduler that takes over applies them, in order.

Requests rather than direct writes with a check ("is this run held?") because the
answer could change between the check and the write; the scheduler alone can apply a
change to what it holds at a point where nothing else moves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select

from crossdock.database import create_session
from crossdock.models import StateRequest
from crossdock.models.base import utcnow
from crossdock.models.scheduler_lease import SchedulerLease as LeaseRow
from crossdock.operations.db_retry import patiently
from crossdock.scheduler.leadership import LEASE_NAME, hold_free_lease
from crossdock.scheduler.state_changes import apply_to_rows

#: Seconds between looks at whether requests were applied.
APPLIED_POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class Change:
    """One action on task instances of one run: ``keys`` are ``(task_id, map_index)``."""

    dag_id: str
    run_id: str
    action: str
    keys: tuple[tuple[str, int], ...]


@dataclass
class Delivery:
    """How the changes went: written at once, or requested from scheduler job ``scheduler_job_id``."""

    applied: bool
    request_ids: list[int] = field(default_factory=list)
    scheduler_job_id: int | None = None


def deliver(changes: list[Change]) -> Delivery:
    """Write ``changes`` directly when no scheduler is active, else as requests (in order)."""
    if not changes:
        return Delivery(applied=True)

    def attempt() -> Delivery:
        with create_session() as session:
            if hold_free_lease(session):
                for change in changes:
                    apply_to_rows(session, dag_id=change.dag_id, run_id=change.run_id, action=change.action,
                                  keys=list(change.keys))
                return Delivery(applied=True)
            now = utcnow()
            rows = [StateRequest(dag_id=change.dag_id, run_id=change.run_id, action=change.action,
                                 task_keys=[list(key) for key in change.keys], requested_at=now)
                    for change in changes]
            session.add_all(rows)
            session.flush()
            holder = session.scalar(select(LeaseRow.holder_job_id).where(LeaseRow.name == LEASE_NAME))
            return Delivery(applied=False, request_ids=[row.id for row in rows], scheduler_job_id=holder)

    return patiently(attempt)


def wait_until_applied(delivery: Delivery, *, timeout: float) -> bool:
    """Whether every request of ``delivery`` was applied within ``timeout`` seconds."""
    if delivery.applied:
        return True
    deadline = time.monotonic() + timeout
    while True:
        with create_session() as session:
            left = session.scalar(select(func.count()).select_from(StateRequest).where(
                StateRequest.id.in_(delivery.request_ids), StateRequest.applied_at.is_(None)))
        if not left:
            delivery.applied = True
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(APPLIED_POLL_INTERVAL)


def scheduler_status() -> dict:
    """The scheduler job holding the lease (None when none does), and whether it renewed it lately."""
    from crossdock.configuration import conf

    with create_session() as session:
        row = session.get(LeaseRow, LEASE_NAME)
    if row is None or row.holder_job_id is None:
        return {"job_id": None, "alive": False}
    window = timedelta(seconds=conf.getfloat("scheduler", "standby_takeover_seconds"))
    return {"job_id": row.holder_job_id, "alive": utcnow() - row.renewed_at <= window}
