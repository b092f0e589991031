"""Which task instances a clear or a mark is about: tasks by id or regex with their
relatives, runs by id or logical-date range, task instances by state.

Read from the database as the action starts; the scheduler then applies the change to
exactly the task instances chosen here (see :mod:`.state_delivery`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from crossdock.dag.serialization import SerializedDAG
from crossdock.models import DagRun, TaskInstance
from crossdock.operations.errors import BadRequest, NotFound
from crossdock.operations.lookups import check_task_ids, dag_run, known_names
from crossdock.operations.state_delivery import Change


def relatives(dag: SerializedDAG, task_ids: Iterable[str], *, upstream: bool, downstream: bool) -> set[str]:
    """``task_ids`` with every task upstream and/or downstream of them, direct or not."""
    chosen = set(task_ids)
    for wanted, edges in ((upstream, "upstream_task_ids"), (downstream, "downstream_task_ids")):
        if not wanted:
            continue
        pending = list(task_ids)
        while pending:
            task = dag.tasks.get(pending.pop())
            for other in getattr(task, edges, ()) if task is not None else ():
                if other not in chosen:
                    chosen.add(other)
                    pending.append(other)
    return chosen


def select_task_ids(dag: SerializedDAG, *, task_ids: Iterable[str] | str | None = None,
                    task_regex: str | None = None, upstream: bool = False, downstream: bool = False) -> set[str]:
    """The tasks named (all of them when neither ids nor a regex is given), with their relatives.

    ``task_regex`` is searched in each task id (``re.search``), as Airflow's ``-t`` is.
    """
    if isinstance(task_ids, str):
        task_ids = [task_ids]
    chosen: set[str] = set()
    if task_ids:
        check_task_ids(dag, list(task_ids))
        chosen.update(task_ids)
    if task_regex:
        try:
            pattern = re.compile(task_regex)
        except re.error as exc:
            raise BadRequest(f"task regex {task_regex!r} is not a valid regular expression: {exc}") from None
        matched = {task_id for task_id in dag.tasks if pattern.search(task_id)}
        if not matched:
            raise NotFound(f"no task of DAG {dag.dag_id!r} matches {task_regex!r}; "
                           f"its tasks: {known_names(list(dag.tasks))}")
        chosen.update(matched)
    if not task_ids and not task_regex:
        chosen = set(dag.tasks)
    return relatives(dag, chosen, upstream=upstream, downstream=downstream)


def select_runs(session: Session, dag_id: str, *, run_id: str | None = None, start_date: datetime | None = None,
                end_date: datetime | None = None, include_past: bool = False,
                include_future: bool = False) -> list[DagRun]:
    """One run by id, or the runs whose logical date lies in ``[start_date, end_date]`` (all when open).

    ``include_past`` / ``include_future`` (Airflow's Past / Future) widen one run to every
    run of the DAG whose logical date is on or before / on or after its own.
    """
    if start_date and end_date and start_date > end_date:
        raise BadRequest(f"the start date {start_date.isoformat()} is after the end date {end_date.isoformat()}")
    if (include_past or include_future) and run_id is None:
        raise BadRequest("include_past and include_future are relative to one run: name the run")
    if run_id is not None:
        run = dag_run(session, dag_id, run_id)
        if include_past or include_future:
            return select_runs(session, dag_id,
                               start_date=_later(start_date, None if include_past else run.logical_date),
                               end_date=_earlier(end_date, None if include_future else run.logical_date))
        if (start_date and run.logical_date < start_date) or (end_date and run.logical_date > end_date):
            return []
        return [run]
    query = select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.logical_date, DagRun.id)
    if start_date is not None:
        query = query.where(DagRun.logical_date >= start_date)
    if end_date is not None:
        query = query.where(DagRun.logical_date <= end_date)
    return list(session.scalars(query))


def _later(one: datetime | None, other: datetime | None) -> datetime | None:
    return max((d for d in (one, other) if d is not None), default=None)


def _earlier(one: datetime | None, other: datetime | None) -> datetime | None:
    return min((d for d in (one, other) if d is not None), default=None)


def select_task_instances(session: Session, dag_id: str, runs: list[DagRun], task_ids: set[str], *,
                          states: set[str | None] | None = None,
                          map_indexes: Iterable[int] | None = None) -> list[TaskInstance]:
    """The task instances of ``task_ids`` in ``runs`` (in ``states``, of ``map_indexes`` when
    given: one element of a mapped task), by run then task."""
    if not runs or not task_ids:
        return []
    order = {run.run_id: index for index, run in enumerate(runs)}
    query = select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id.in_(list(order)),
                                       TaskInstance.task_id.in_(sorted(task_ids)))
    if map_indexes is not None:
        query = query.where(TaskInstance.map_index.in_(sorted(set(map_indexes))))
    tis = [ti for ti in session.scalars(query) if states is None or ti.state in states]
    return sorted(tis, key=lambda ti: (order[ti.run_id], ti.task_id, ti.map_index))


def changes_for(action: str, tis: list[TaskInstance]) -> list[Change]:
    """One :class:`Change` per run, in the order the task instances come."""
    by_run: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for ti in tis:
        by_run[(ti.dag_id, ti.run_id)].append((ti.task_id, ti.map_index))
    return [Change(dag_id, run_id, action, tuple(keys)) for (dag_id, run_id), keys in by_run.items()]
