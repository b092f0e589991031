"""Backfill: one run per schedule interval of a past date range (``crossdock dags backfill``).

The runs are written ``queued`` with run type ``backfill`` and the active scheduler runs
them like any other (principle 1: a backfill is not a second scheduler), oldest first
and never more at once than the DAG's ``max_active_runs`` (the scheduler counts every
run of the DAG against it). They run even while the DAG is paused, as Airflow's
backfill does. An interval that already has a run keeps it: a finished run counts as
it ended, unless ``reset_dagruns`` clears its task instances to run them again.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import select

from crossdock.database import create_session, ensure_migrated
from crossdock.models import DagRun
from crossdock.models.base import utcnow
from crossdock.operations.clearing import clear_task_instances
from crossdock.operations.errors import BadRequest
from crossdock.operations.lookups import run_dict, serialized_dag, utc_datetime
from crossdock.operations.progress import count_states
from crossdock.operations.state_delivery import Delivery, wait_until_applied
from crossdock.scheduler.dag_runs import BACKFILL, run_id_for
from crossdock.scheduler.timetable import data_intervals_between
from crossdock.state import DagRunState

#: Most runs one backfill may create (a typo in a year should not queue a million runs).
MAX_BACKFILL_RUNS = 10000
#: Seconds between looks at the runs' states while waiting.
POLL_INTERVAL = 0.25
FINISHED = (DagRunState.SUCCESS.value, DagRunState.FAILED.value)

Progress = Callable[[dict[str, Any]], None]


def backfill(dag_id: str, *, start_date: datetime | str, end_date: datetime | str, reset_dagruns: bool = False,
             progress: Progress | None = None, wait: bool = True, timeout: float | None = None) -> list[dict[str, Any]]:
    """Run ``dag_id`` for every interval whose logical date lies in ``[start_date, end_date]``.

    :param reset_dagruns: clear the task instances of runs that already exist in the range,
        so they run again.
    :param progress: called with ``{"dag_id", "total", "done", "states": {state: runs}}``
        once at the start and again whenever a run changes state.
    :param wait: wait until every run has finished (else return once they are queued).
    :param timeout: with ``wait``, seconds after which to stop waiting and return the runs
        as they are (None: no limit).

    Returns the runs, oldest first, as they were when it returned.
    """
    start = utc_datetime(start_date, what="start date")
    end = utc_datetime(end_date, what="end date")
    if start is None or end is None:
        raise BadRequest("a backfill needs a start date and an end date")
    if start > end:
        raise BadRequest(f"the start date {start.isoformat()} is after the end date {end.isoformat()}")
    ensure_migrated()
    with create_session() as session:
        dag = serialized_dag(session, dag_id)
    intervals = data_intervals_between(schedule=dag.schedule, start=start, end=end, limit=MAX_BACKFILL_RUNS)
    if dag.schedule is None or dag.schedule == "@once":
        raise BadRequest(f"DAG {dag_id!r} has no regular schedule ({dag.schedule or 'None'}), "
                         f"so it has no intervals to backfill; trigger it instead")
    if len(intervals) > MAX_BACKFILL_RUNS:
        raise BadRequest(f"{start.date()} to {end.date()} holds more than {MAX_BACKFILL_RUNS} intervals of "
                         f"{dag.schedule!r}; backfill a shorter range")
    if not intervals:
        raise BadRequest(f"no interval of {dag.schedule!r} starts between {start.isoformat()} and {end.isoformat()}")
    # Runs cleared through the scheduler look finished until it applies the requests.
    requests = []
    if reset_dagruns:
        cleared = clear_task_instances(dag_id, start_date=start, end_date=end)
        requests = sorted({row["request_id"] for row in cleared if row["request_id"] is not None})
    run_ids = _create_runs(dag_id, intervals)
    if not wait:
        return _runs(dag_id, run_ids)
    return _wait(dag_id, run_ids, Delivery(applied=not requests, request_ids=requests), progress=progress,
                 timeout=timeout)


def _create_runs(dag_id: str, intervals) -> list[str]:
    """The run of each interval, oldest first: the existing one, or a new queued backfill run."""
    now = utcnow()
    with create_session() as session:
        existing = {run.logical_date: run.run_id for run in session.scalars(select(DagRun).where(
            DagRun.dag_id == dag_id, DagRun.logical_date >= intervals[0].start,
            DagRun.logical_date <= intervals[-1].start))}
        taken = set(session.scalars(select(DagRun.run_id).where(DagRun.dag_id == dag_id)))
        run_ids = []
        for interval in intervals:
            run_id = existing.get(interval.start)
            if run_id is None:
                run_id = run_id_for(BACKFILL, interval.start)
                if run_id in taken:
                    raise BadRequest(f"DAG {dag_id!r} already has a run {run_id!r} at another logical date")
                session.add(DagRun(dag_id=dag_id, run_id=run_id, run_type=BACKFILL, logical_date=interval.start,
                                   data_interval_start=interval.start, data_interval_end=interval.end,
                                   state=DagRunState.QUEUED.value, queued_at=now, conf={}))
            run_ids.append(run_id)
    return run_ids


def _runs(dag_id: str, run_ids: list[str]) -> list[dict[str, Any]]:
    with create_session() as session:
        by_id = {run.run_id: run for run in session.scalars(select(DagRun).where(
            DagRun.dag_id == dag_id, DagRun.run_id.in_(run_ids)))}
        return [run_dict(by_id[run_id]) for run_id in run_ids if run_id in by_id]


def _wait(dag_id: str, run_ids: list[str], resets: Delivery, *, progress: Progress | None,
          timeout: float | None) -> list[dict[str, Any]]:
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        reset_done = wait_until_applied(resets, timeout=0)
        runs = _runs(dag_id, run_ids)
        states = count_states(run["state"] for run in runs)
        done = sum(states.get(state, 0) for state in FINISHED) if reset_done else 0
        if states != last:
            last = states
            if progress is not None:
                progress({"dag_id": dag_id, "total": len(run_ids), "done": done, "states": states})
        if (reset_done and done >= len(runs)) or (deadline is not None and time.monotonic() >= deadline):
            return runs
        time.sleep(POLL_INTERVAL)
