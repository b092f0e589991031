"""Task instances as listed and shown: where each try went, why, on which host or pod, how long.

Airflow's ``TaskInstance`` field names, plus crossdock's ``routing_reason`` (why the
scheduler sent it to its executor), ``failure_reason`` (the one line a failed try ended
with) and ``external_executor_id`` (the Celery task id or pod name). ``hostname`` is the
worker's node name on the Celery path and the pod's name on the Kubernetes path.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crossdock.dag.serialization import SerializedDAG
from crossdock.database import create_session, ensure_migrated
from crossdock.models import DagRun, TaskInstance
from crossdock.operations.errors import BadRequest, NotFound
from crossdock.operations.lookups import dag_row, dag_run
from crossdock.operations.reads.dags import task_groups_of
from crossdock.operations.reads.paging import DEFAULT_LIMIT, paged
from crossdock.operations.reads.parsed_dags import parsed_dags
from crossdock.operations.reads.runs import ALL_DAGS
from crossdock.state import TaskInstanceState

#: The state filter's word for a task instance with no state yet (Airflow's ``none``).
NO_STATE = "none"
TI_STATES = (*(state.value for state in TaskInstanceState), NO_STATE)


def ti_dict(ti: Any, logical_date: Any, parsed: SerializedDAG | None,
            group_of: dict[str, str] | None = None) -> dict[str, Any]:
    """One task instance (a model or a row of its columns); ``group_of`` is
    :func:`task_groups_of` of its DAG, when already known."""
    task = parsed.tasks.get(ti.task_id) if parsed is not None else None
    if group_of is None:
        group_of = task_groups_of(parsed) if parsed is not None else {}
    return {
        "task_id": ti.task_id, "dag_id": ti.dag_id, "dag_run_id": ti.run_id, "map_index": ti.map_index,
        "execution_date": logical_date, "start_date": ti.start_date, "end_date": ti.end_date,
        "duration": ti.duration, "state": ti.state, "try_number": ti.try_number, "max_tries": ti.max_tries,
        "hostname": ti.hostname or "", "unixname": None, "pool": ti.pool, "pool_slots": ti.pool_slots,
        "queue": ti.queue, "priority_weight": ti.priority_weight,
        "operator": task.task_type if task is not None else None, "queued_when": ti.queued_dttm,
        "pid": ti.pid, "executor": ti.executor,
        "executor_config": json.dumps(ti.executor_config) if ti.executor_config else "{}",
        "note": None, "routing_reason": ti.routing_reason, "failure_reason": ti.failure_reason,
        "external_executor_id": ti.external_executor_id, "next_retry_at": ti.next_retry_at,
        "task_group_id": group_of.get(ti.task_id),
    }


def _check_states(state: list[str] | None) -> None:
    bad = sorted(set(state or []) - set(TI_STATES))
    if bad:
        raise BadRequest(f"a task instance state is one of {', '.join(TI_STATES)}, not {', '.join(map(repr, bad))}")


def _state_filter(query, state: list[str]):
    named = [s for s in state if s != NO_STATE]
    condition = TaskInstance.state.in_(named)
    if NO_STATE in state:
        condition = condition | TaskInstance.state.is_(None)
    return query.where(condition)


def list_task_instances(dag_id: str, run_id: str, *, limit: int = DEFAULT_LIMIT, offset: int = 0,
                        state: list[str] | None = None, task_ids: list[str] | None = None,
                        queue: list[str] | None = None) -> dict[str, Any]:
    """``{"task_instances": [...], "total_entries": N}`` in the order they were created.

    :param dag_id: / :param run_id: the run; ``~`` for either means every DAG / every run.
    :param state: only these states (``none`` for no state yet).
    :param task_ids: only these tasks (every map index of a mapped one).
    :param queue: only these queues.
    """
    _check_states(state)
    # Plain rows, not ORM objects: a 1,000-instance page costs half as much to build.
    query = (select(*TaskInstance.__table__.columns, DagRun.logical_date.label("run_logical_date"))
             .join(DagRun, (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id))
             .order_by(TaskInstance.id))
    ensure_migrated()
    with create_session() as session:
        if dag_id != ALL_DAGS:
            query = query.where(TaskInstance.dag_id == dag_id)
            if run_id != ALL_DAGS:
                dag_run(session, dag_id, run_id)
            else:
                dag_row(session, dag_id)
        if run_id != ALL_DAGS:
            query = query.where(TaskInstance.run_id == run_id)
        if state:
            query = _state_filter(query, state)
        if task_ids:
            query = query.where(TaskInstance.task_id.in_(task_ids))
        if queue:
            query = query.where(TaskInstance.queue.in_(queue))
        rows, total = paged(session, query, limit=limit, offset=offset, scalars=False)
        parsed = parsed_dags(session, {row.dag_id for row in rows})
    groups = {dag_id: task_groups_of(dag) for dag_id, dag in parsed.items()}
    return {"task_instances": [ti_dict(row, row.run_logical_date, parsed.get(row.dag_id), groups.get(row.dag_id, {}))
                               for row in rows],
            "total_entries": total}


def find_task_instance(session: Session, dag_id: str, run_id: str, task_id: str, map_index: int) -> TaskInstance:
    """The task instance, or NotFound saying whether the DAG, the run, the task or the instance is missing."""
    run = dag_run(session, dag_id, run_id)
    ti = session.scalar(select(TaskInstance).where(
        TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id,
        TaskInstance.map_index == map_index))
    if ti is not None:
        return ti
    parsed = parsed_dags(session, [dag_id]).get(dag_id)
    if parsed is not None and task_id not in parsed.tasks:
        raise NotFound(f"DAG {dag_id!r} has no task {task_id!r}")
    index = f" with map index {map_index}" if map_index >= 0 else ""
    raise NotFound(f"run {run_id!r} of DAG {dag_id!r} has no task instance of {task_id!r}{index} "
                   f"(the run is {run.state})")


def get_task_instance(dag_id: str, run_id: str, task_id: str, *, map_index: int = -1) -> dict[str, Any]:
    """One task instance (``map_index`` -1 for an unmapped task)."""
    ensure_migrated()
    with create_session() as session:
        ti = find_task_instance(session, dag_id, run_id, task_id, map_index)
        run = dag_run(session, dag_id, run_id)
        return ti_dict(ti, run.logical_date, parsed_dags(session, [dag_id]).get(dag_id))
