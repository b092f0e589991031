"""What the scheduler writes: the changes of a loop step in one transaction, and its job row.

Between flushes the task table in memory is the truth; a flush that fails (the database
went away, the lease was lost) keeps every change for the next one, so a loop step's
outcome is written whole or not at all.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from crossdock.database import create_session, describe_db_error
from crossdock.models import DagRun, Job, TaskInstance
from crossdock.models.base import utcnow
from crossdock.scheduler.leadership import SchedulerLease
from crossdock.scheduler.task_table import TaskTable
from crossdock.scheduler.value_handover import write_changes

if TYPE_CHECKING:
    from crossdock.scheduler.state_requests import StateRequests

log = logging.getLogger("crossdock.scheduler")

#: Columns of a task instance the scheduler changes and flushes.
TI_FLUSH_COLUMNS = (
    "state", "try_number", "max_tries", "executor", "external_executor_id", "queued_by_job_id",
    "hostname", "pid", "queued_dttm", "start_date", "end_date", "duration", "next_retry_at",
    "stuck_in_queued_count", "failure_reason", "routing_reason",
)
RUN_FLUSH_COLUMNS = ("state", "start_date", "end_date")


def flush(table: TaskTable, lease: SchedulerLease, *, requests: "StateRequests | None" = None) -> None:
    """Write every change since the last flush (bulk updates), fenced by the lease.

    :param requests: users' requests applied in memory since the last flush; they are
        marked applied in the same transaction as the states they changed.
    """
    pending_requests = requests is not None and bool(requests.unwritten)
    if not table.dirty_tis and not table.dirty_runs and not table.dirty_values and not pending_requests:
        return
    ti_rows = []
    for ti_id in table.dirty_tis:
        entry = table.entry_to_flush(ti_id)
        if entry is None:
            continue
        ti = entry[1]
        row = {column: getattr(ti, column) for column in TI_FLUSH_COLUMNS}
        row["id"] = ti.id
        ti_rows.append(row)
    run_rows = []
    for run_key in table.dirty_runs:
        run = table.run_to_flush(run_key)
        if run is None:
            continue
        row = {column: getattr(run.dag_run, column) for column in RUN_FLUSH_COLUMNS}
        row["id"] = run.dag_run.id
        run_rows.append(row)
    with create_session() as session:
        lease.fence(session)
        if ti_rows:
            session.execute(update(TaskInstance), ti_rows)
        if run_rows:
            session.execute(update(DagRun), run_rows)
        for run in table.dirty_values.values():
            write_changes(session, run.dag_id, run.run_id, run.values)
        if pending_requests:
            requests.write_applied(session)
    table.written()
    if pending_requests:
        requests.written()


def heartbeat_job(job_id: int | None) -> None:
    try:
        with create_session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(latest_heartbeat=utcnow()))
    except SQLAlchemyError as exc:
        log.error("scheduler heartbeat failed: %s", describe_db_error(exc))


def close_job(job_id: int | None, state: str) -> None:
    try:
        with create_session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(state=state, end_date=utcnow()))
    except SQLAlchemyError as exc:
        log.error("could not close job %s: %s", job_id, describe_db_error(exc))
