"""What a clear or a mark does to one task instance, and to a run no scheduler holds in memory.

A user's clear or mark reaches task instances one of two ways (design principle 1, see
:mod:`crossdock.operations.state_delivery`): the active scheduler applies it to the task
instances it holds, through its task table (:mod:`.state_requests`); or, for a run it
does not hold (or when no scheduler is active at all), the rows are written directly by
:func:`apply_to_rows` in a transaction that holds the lease. Both take the fields from
:func:`cleared_fields` and :func:`marked_fields`, so the two ways cannot drift apart.

Clearing keeps the try number, as Airflow does: the next try is numbered after the last
one, and the task gets its full ``retries`` again from there (``max_tries`` is raised
to ``try_number + retries``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crossdock.models import DagRun, SerializedDagModel, TaskInstance
from crossdock.models.base import utcnow
from crossdock.models.state_request import CLEAR
from crossdock.state import DONE_OK_STATES, FINISHED_STATES, DagRunState

#: The failure reason a task instance marked failed by hand carries.
MARKED_FAILED_REASON = "marked failed by a user"
FINISHED_RUN_STATES = (DagRunState.SUCCESS.value, DagRunState.FAILED.value)


def cleared_fields(ti: TaskInstance, retries: int | None) -> dict:
    """The columns a cleared task instance gets besides ``state=None``.

    :param retries: the task's ``retries`` from its DAG; None when the DAG no longer has
        the task (its retries left are kept as they were).
    """
    if retries is None:
        retries = max(0, ti.max_tries - ti.try_number)
    return {"max_tries": ti.try_number + retries, "next_retry_at": None, "start_date": None, "end_date": None,
            "duration": None, "failure_reason": None, "external_executor_id": None, "stuck_in_queued_count": 0}


def marked_fields(ti: TaskInstance, state: str, now: datetime) -> dict:
    """The columns a task instance marked ``state`` (success or failed) gets besides its state."""
    start = ti.start_date or now
    return {"start_date": start, "end_date": now, "duration": max(0.0, (now - start).total_seconds()),
            "next_retry_at": None, "failure_reason": MARKED_FAILED_REASON if state == "failed" else None}


def needs_change(ti: TaskInstance, action: str) -> bool:
    """Whether ``action`` would change ``ti``: a clear of a cleared one or a mark to its state does not."""
    return ti.state is not None if action == CLEAR else ti.state != action


def task_retries(session: Session, dag_id: str) -> dict[str, int]:
    """task_id → retries, from the DAG's serialized form (empty when it has none)."""
    tasks = session.scalar(select(SerializedDagModel.data["tasks"]).where(SerializedDagModel.dag_id == dag_id))
    return {task_id: int(task.get("retries") or 0) for task_id, task in (tasks or {}).items()}


def apply_to_rows(session: Session, *, dag_id: str, run_id: str, action: str,
                  keys: list[tuple[str, int]], now: datetime | None = None) -> str:
    """Clear or mark the task instances ``keys`` of one run in the database; one line saying what changed.

    Only for a run no scheduler holds in memory: the caller holds the lease (the active
    scheduler itself, or :func:`~crossdock.scheduler.leadership.hold_free_lease`). A
    finished run with a task instance to run again goes back to ``queued`` and the
    scheduler takes it up like a triggered run; a finished run whose task instances are
    all finished gets its state again from them (success only if all succeeded or skipped).
    """
    now = now or utcnow()
    run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
                          .with_for_update()).first()
    if run is None:
        return f"run {run_id!r} of DAG {dag_id!r} no longer exists; nothing changed"
    tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                     TaskInstance.run_id == run_id)).all()
    wanted = {(task_id, int(map_index)) for task_id, map_index in keys}
    chosen = [ti for ti in tis if (ti.task_id, ti.map_index) in wanted and needs_change(ti, action)]
    retries = task_retries(session, dag_id) if action == CLEAR and chosen else {}
    for ti in chosen:
        if action == CLEAR:
            fields = {"state": None, **cleared_fields(ti, retries.get(ti.task_id))}
        else:
            fields = {"state": action, **marked_fields(ti, action, now)}
        for name, value in fields.items():
            setattr(ti, name, value)
    settle_run(run, tis, now)
    return describe(action, len(chosen))


def settle_run(run: DagRun, tis: list[TaskInstance], now: datetime) -> None:
    """A finished run's state after some of its task instances changed (queued, running runs are left)."""
    if run.state not in FINISHED_RUN_STATES:
        return
    if any(ti.state not in FINISHED_STATES for ti in tis):
        run.state = DagRunState.QUEUED.value
        run.queued_at = now
        run.start_date = run.end_date = None
        return
    state = DagRunState.SUCCESS.value if all(ti.state in DONE_OK_STATES for ti in tis) else DagRunState.FAILED.value
    if state != run.state:
        run.state = state
        run.end_date = now


def describe(action: str, count: int) -> str:
    verb = "cleared" if action == CLEAR else f"marked {action}"
    return f"{count} task instance(s) {verb}"
