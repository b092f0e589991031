"""Users' clears and marks, applied by the active scheduler in its loop (design principle 1).

The operations layer writes a :class:`~crossdock.models.state_request.StateRequest` row
for a run that an active scheduler may hold; the scheduler reads the pending ones with
the step that looks for triggered runs (one query) and applies each in id order:

* a run it holds in memory: through :meth:`TaskTable.set_state`, like any transition of
  its own. A try still queued or running is stopped through its executor first, and a
  report that try sends later is ignored (its task instance is no longer queued or
  running, or has a newer try). The request is marked applied by the same flush that
  writes the new states, so the two are stored together or not at all;
* a run it does not hold (finished, or still queued): straight to the rows
  (:func:`~crossdock.scheduler.state_changes.apply_to_rows`) in one fenced transaction
  with the mark; a finished run queued again is then loaded like a triggered one.

A run finished in this step but not yet flushed waits for the next step, and so do the
later requests for it, so a run's requests apply in the order they were made. A request
that cannot be applied (it names what no longer fits the run) is marked applied with
the reason as its outcome, so it never holds back the ones after it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from crossdock.database import create_session
from crossdock.executors.routing import ExecutorRouter
from crossdock.models.base import utcnow
from crossdock.models.state_request import ACTIONS, CLEAR, StateRequest
from crossdock.scheduler.active_run import ActiveRun
from crossdock.scheduler.leadership import LeadershipLost, SchedulerLease
from crossdock.scheduler.recovery import revoke
from crossdock.scheduler.state_changes import apply_to_rows, cleared_fields, describe, marked_fields, needs_change
from crossdock.scheduler.task_table import BUSY_STATES, TaskTable

log = logging.getLogger("crossdock.scheduler")

#: Most requests read and applied in one loop step; the rest wait for the next.
REQUESTS_PER_STEP = 200


class StateRequests:
    """Reads pending requests and applies them; remembers those applied in memory until the flush."""

    def __init__(self, table: TaskTable, router: ExecutorRouter, lease: SchedulerLease, *, job_id: int | None):
        self.table = table
        self.router = router
        self.lease = lease
        self.job_id = job_id
        #: request id → outcome, applied in memory and written by the next flush.
        self.unwritten: dict[int, str] = {}
        self._applied_at: dict[int, datetime] = {}

    def apply_pending(self) -> int:
        """Apply what users asked for since the last step; returns how many task instances changed."""
        with create_session() as session:
            pending = list(session.scalars(select(StateRequest).where(StateRequest.applied_at.is_(None))
                                           .order_by(StateRequest.id).limit(REQUESTS_PER_STEP)))
        pending = [request for request in pending if request.id not in self.unwritten]
        if not pending:
            return 0
        held = {(run.dag_id, run.run_id): run for run in self.table.runs.values()}
        waiting = {(run.dag_id, run.run_id) for run in self.table.finished_runs.values()}
        changed = 0
        for request in pending:
            key = (request.dag_id, request.run_id)
            if key in waiting:
                continue  # finished in this step, not yet written: next step, in order
            run = held.get(key)
            try:
                if request.action not in ACTIONS:
                    raise ValueError(f"unknown action {request.action!r}; known: {', '.join(ACTIONS)}")
                if run is not None:
                    changed += self._apply_in_memory(run, request)
                else:
                    self._apply_to_rows(request)
                    changed += 1
            except (SQLAlchemyError, LeadershipLost):
                raise  # the database or the lease: the whole step is tried again
            except Exception as exc:  # noqa: BLE001 - one bad request must not hold back the others
                log.exception("request %s could not be applied", request.id)
                with create_session() as session:
                    self.lease.fence(session)
                    self._mark(session, request.id, f"not applied: {type(exc).__name__}: {exc}", utcnow())
                continue
            log.info("applied request %s (%s of %s task instance(s) of run %s of %s)", request.id, request.action,
                     len(request.task_keys), request.run_id, request.dag_id)
        return changed

    def _apply_in_memory(self, run: ActiveRun, request: StateRequest) -> int:
        now = utcnow()
        action = request.action
        changed = 0
        for task_id, map_index in request.task_keys:
            ti = run.tis.get((task_id, int(map_index)))
            if ti is None or not needs_change(ti, action):
                continue
            if ti.state in BUSY_STATES:
                revoke(self.router.owner_of(ti), ti)
            if action == CLEAR:
                task = run.dag.tasks.get(task_id)
                self.table.set_state(run, ti, None, **cleared_fields(ti, task.retries if task else None))
                run.pending_checks.add(task_id)
                run.sensors.pop((task_id, ti.map_index), None)
            else:
                self.table.set_state(run, ti, action, **marked_fields(ti, action, now))
            changed += 1
        self.unwritten[request.id] = describe(action, changed)
        self._applied_at[request.id] = now
        return changed

    def _apply_to_rows(self, request: StateRequest) -> None:
        with create_session() as session:
            self.lease.fence(session)
            outcome = apply_to_rows(session, dag_id=request.dag_id, run_id=request.run_id, action=request.action,
                                    keys=request.task_keys)
            self._mark(session, request.id, outcome, utcnow())

    def _mark(self, session: Session, request_id: int, outcome: str, when: datetime) -> None:
        session.execute(update(StateRequest).where(StateRequest.id == request_id)
                        .values(applied_at=when, applied_by_job_id=self.job_id, outcome=outcome))

    # -- written with the flush -------------------------------------------------------
    def write_applied(self, session: Session) -> None:
        """Inside the flush's transaction: mark the requests applied in memory as applied."""
        for request_id, outcome in self.unwritten.items():
            self._mark(session, request_id, outcome, self._applied_at[request_id])

    def written(self) -> None:
        self.unwritten.clear()
        self._applied_at.clear()
