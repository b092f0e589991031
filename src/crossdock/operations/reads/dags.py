"""DAGs as listed and shown: flags, schedule, tags, recent runs, import errors, tasks.

Field names are Airflow's (``GET /api/v1/dags``): ``tags`` are ``{"name": ...}`` objects and
``schedule_interval`` is Airflow's typed object (``CronExpression`` / ``TimeDelta``).
crossdock adds ``recent_dag_runs`` (newest first) and ``last_dag_run_state`` so one call
draws the DAG list, and ``task_group_id`` on each task so a grid can nest groups.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crossdock.dag.schedule import TIMEDELTA_PREFIX
from crossdock.dag.serialization import SerializedDAG
from crossdock.database import create_session, ensure_migrated
from crossdock.models import DagImportError, DagModel, DagRun
from crossdock.operations.errors import NotFound
from crossdock.operations.lookups import dag_row
from crossdock.operations.reads.paging import DEFAULT_LIMIT, checked_page, count, paged
from crossdock.operations.reads.parsed_dags import parsed_dag, parsed_dags

#: Runs of each DAG a listing shows, newest first.
RECENT_RUNS = 5


def schedule_interval(schedule: str | None) -> dict[str, Any] | None:
    """A stored schedule in Airflow's ``ScheduleInterval`` shape (None for an unscheduled DAG)."""
    if schedule is None:
        return None
    if schedule.startswith(TIMEDELTA_PREFIX):
        delta = timedelta(seconds=float(schedule[len(TIMEDELTA_PREFIX):]))
        return {"__type": "TimeDelta", "days": delta.days, "seconds": delta.seconds,
                "microseconds": delta.microseconds}
    return {"__type": "CronExpression", "value": schedule}


def recent_runs(session: Session, dag_ids: list[str], *, per_dag: int = RECENT_RUNS) -> dict[str, list[dict]]:
    """dag_id → its ``per_dag`` newest runs (one windowed query for all the DAGs)."""
    if not dag_ids or per_dag < 1:
        return {}
    rank = func.row_number().over(partition_by=DagRun.dag_id,
                                  order_by=(DagRun.logical_date.desc(), DagRun.id.desc())).label("rank")
    ranked = (select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.logical_date, DagRun.start_date,
                     DagRun.end_date, rank).where(DagRun.dag_id.in_(dag_ids)).subquery())
    rows = session.execute(select(ranked).where(ranked.c.rank <= per_dag)
                           .order_by(ranked.c.dag_id, ranked.c.rank)).all()
    runs: dict[str, list[dict]] = {}
    for row in rows:
        runs.setdefault(row.dag_id, []).append({
            "dag_run_id": row.run_id, "state": row.state, "logical_date": row.logical_date,
            "start_date": row.start_date, "end_date": row.end_date})
    return runs


def _files_with_errors(session: Session, filelocs: Iterable[str]) -> set[str]:
    names = [name for name in set(filelocs) if name]
    if not names:
        return set()
    return set(session.scalars(select(DagImportError.filename).where(DagImportError.filename.in_(names))))


def dag_dict(row: DagModel, parsed: SerializedDAG | None, runs: list[dict], has_import_errors: bool) -> dict:
    """One DAG in Airflow's ``DAG`` shape plus crossdock's recent runs."""
    return {
        "dag_id": row.dag_id, "root_dag_id": None, "is_paused": bool(row.is_paused),
        "is_active": bool(row.is_active), "is_subdag": False, "fileloc": row.fileloc,
        "description": parsed.description if parsed else None, "owners": [],
        "tags": [{"name": tag} for tag in (row.tags or [])],
        "schedule_interval": schedule_interval(row.schedule), "timetable_description": row.schedule,
        "catchup": bool(row.catchup), "start_date": row.start_date,
        "max_active_runs": row.max_active_runs, "max_active_tasks": row.max_active_tasks,
        "last_parsed_time": row.last_parsed, "next_dagrun": row.next_dagrun,
        "has_import_errors": has_import_errors, "default_view": "grid",
        "recent_dag_runs": runs, "last_dag_run_state": runs[0]["state"] if runs else None,
    }


def list_dags(*, limit: int = DEFAULT_LIMIT, offset: int = 0, dag_id_pattern: str | None = None,
              tags: Iterable[str] | None = None, paused: bool | None = None, only_active: bool = True,
              recent: int = RECENT_RUNS) -> dict[str, Any]:
    """``{"dags": [...], "total_entries": N}``, ordered by dag_id.

    :param dag_id_pattern: only DAGs whose id contains this text (case-insensitive).
    :param tags: only DAGs carrying at least one of these tags.
    :param paused: only paused (True) or only unpaused (False) DAGs; None: both.
    :param only_active: leave out DAGs whose file no longer defines them.
    :param recent: how many newest runs each DAG lists under ``recent_dag_runs``.
    """
    limit, offset = checked_page(limit, offset)
    ensure_migrated()
    query = select(DagModel).order_by(DagModel.dag_id)
    if only_active:
        query = query.where(DagModel.is_active.is_(True))
    if dag_id_pattern:
        query = query.where(func.lower(DagModel.dag_id).contains(dag_id_pattern.lower(), autoescape=True))
    if paused is not None:
        query = query.where(DagModel.is_paused.is_(bool(paused)))
    with create_session() as session:
        wanted = [tag for tag in (tags or []) if tag]
        if wanted:
            query = query.where(DagModel.dag_id.in_(_dag_ids_tagged(session, wanted)))
        rows, total = paged(session, query, limit=limit, offset=offset)
        ids = [row.dag_id for row in rows]
        parsed = parsed_dags(session, ids)
        runs = recent_runs(session, ids, per_dag=recent)
        failing = _files_with_errors(session, (row.fileloc for row in rows))
        dags = [dag_dict(row, parsed.get(row.dag_id), runs.get(row.dag_id, []), row.fileloc in failing)
                for row in rows]
    return {"dags": dags, "total_entries": total}


def _dag_ids_tagged(session: Session, tags: list[str]) -> list[str]:
    """Tags are a JSON list per DAG; filtering in Python keeps one query on both databases."""
    wanted = set(tags)
    return [dag_id for dag_id, row_tags in session.execute(select(DagModel.dag_id, DagModel.tags))
            if wanted & set(row_tags or [])]


def get_dag(dag_id: str, *, recent: int = RECENT_RUNS) -> dict[str, Any]:
    """One DAG (NotFound naming the known DAGs), with its newest runs and, when parsed,
    ``doc_md`` and ``params``."""
    ensure_migrated()
    with create_session() as session:
        row = dag_row(session, dag_id)
        parsed = parsed_dag(session, dag_id)
        runs = recent_runs(session, [dag_id], per_dag=recent).get(dag_id, [])
        data = dag_dict(row, parsed, runs, bool(_files_with_errors(session, [row.fileloc])))
    data["doc_md"] = parsed.doc_md if parsed else None
    data["params"] = parsed.params if parsed else {}
    return data


def parsed_or_not_found(session: Session, dag_id: str) -> SerializedDAG:
    dag_row(session, dag_id)
    parsed = parsed_dag(session, dag_id)
    if parsed is None:
        raise NotFound(f"DAG {dag_id!r} has not been parsed yet (see: crossdock dags reserialize)")
    return parsed


def task_groups_of(parsed: SerializedDAG) -> dict[str, str]:
    """task_id → the innermost task group holding it (tasks outside groups are absent)."""
    return {task_id: group.group_id for group in parsed.task_groups.values() for task_id in group.task_ids}


def task_dict(parsed: SerializedDAG, task_id: str, group_of: dict[str, str]) -> dict[str, Any]:
    """One task in Airflow's ``Task`` shape (``GET /dags/{dag_id}/tasks``), plus its group."""
    task = parsed.tasks[task_id]
    return {
        "task_id": task_id, "operator_name": task.task_type, "class_ref": {"class_name": task.task_type},
        "downstream_task_ids": task.downstream, "upstream_task_ids": task.upstream,
        "trigger_rule": task.trigger_rule, "queue": task.queue, "pool": task.pool,
        "pool_slots": task.pool_slots, "priority_weight": task.priority_weight, "retries": task.retries,
        "retry_delay": {"__type": "TimeDelta", "days": 0, "seconds": int(task.retry_delay), "microseconds": 0},
        "retry_exponential_backoff": task.retry_exponential_backoff,
        "execution_timeout": task.execution_timeout, "depends_on_past": task.depends_on_past,
        "wait_for_downstream": task.wait_for_downstream, "is_mapped": task.mapped is not None,
        "executor": task.executor, "task_group_id": group_of.get(task_id),
    }


def list_tasks(dag_id: str, *, limit: int = DEFAULT_LIMIT, offset: int = 0) -> dict[str, Any]:
    """``{"tasks": [...], "total_entries": N}`` in the DAG's dependency order, plus
    ``task_groups`` (group_id → label, parent, tooltip, tasks, groups) for drawing."""
    limit, offset = checked_page(limit, offset)
    ensure_migrated()
    with create_session() as session:
        parsed = parsed_or_not_found(session, dag_id)
    group_of = task_groups_of(parsed)
    ids = list(parsed.tasks)
    groups = {group_id: {"label": group.label, "parent": group.parent_group_id, "tooltip": group.tooltip,
                         "tasks": list(group.task_ids), "groups": list(group.child_group_ids)}
              for group_id, group in parsed.task_groups.items()}
    return {"tasks": [task_dict(parsed, task_id, group_of) for task_id in ids[offset:offset + limit]],
            "total_entries": len(ids), "task_groups": groups}


def _import_error_dict(row: DagImportError) -> dict[str, Any]:
    return {"import_error_id": row.id, "filename": row.filename, "stack_trace": row.stacktrace,
            "timestamp": row.timestamp}


def list_import_errors(*, limit: int = DEFAULT_LIMIT, offset: int = 0,
                       filename_pattern: str | None = None) -> dict[str, Any]:
    """``{"import_errors": [{"import_error_id", "filename", "stack_trace", "timestamp"}], "total_entries"}``."""
    ensure_migrated()
    query = select(DagImportError).order_by(DagImportError.filename)
    if filename_pattern:
        query = query.where(DagImportError.filename.contains(filename_pattern, autoescape=True))
    with create_session() as session:
        rows, total = paged(session, query, limit=limit, offset=offset)
        return {"import_errors": [_import_error_dict(row) for row in rows], "total_entries": total}


def get_import_error(import_error_id: int) -> dict[str, Any]:
    ensure_migrated()
    with create_session() as session:
        row = session.get(DagImportError, import_error_id)
        if row is None:
            total = count(session, select(DagImportError))
            raise NotFound(f"import error {import_error_id} not found ({total} import errors are stored)")
        return _import_error_dict(row)
