"""Finding what an action is about, or saying clearly that it does not exist.

Every action names a DAG, often a run, sometimes tasks; these lookups turn a name that
matches nothing into a :class:`~crossdock.operations.errors.NotFound` whose message says
which name and what exists instead, and a date the caller typed into a UTC datetime.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crossdock.dag.serialization import SerializedDAG
from crossdock.models import DagModel, DagRun, SerializedDagModel, TaskInstance
from crossdock.operations.errors import BadRequest, NotFound

#: Most names listed in a "not found" message before it says how many more there are.
NAMES_SHOWN = 10


def known_names(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:NAMES_SHOWN])
    more = len(names) - NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def dag_row(session: Session, dag_id: str) -> DagModel:
    """The DAG's row, or NotFound naming the DAGs that exist."""
    dag = session.get(DagModel, dag_id)
    if dag is None or not dag.is_active:
        known = list(session.scalars(select(DagModel.dag_id).where(DagModel.is_active.is_(True))))
        hint = f"; known DAGs: {known_names(known)}" if known else "; no DAGs are parsed yet"
        raise NotFound(f"DAG {dag_id!r} not found{hint}")
    return dag


def serialized_dag(session: Session, dag_id: str) -> SerializedDAG:
    """The DAG's task graph as last parsed (NotFound for an unknown DAG)."""
    dag_row(session, dag_id)
    row = session.get(SerializedDagModel, dag_id)
    if row is None:
        raise NotFound(f"DAG {dag_id!r} has not been parsed yet (see: crossdock dags reserialize)")
    return SerializedDAG.from_dict(row.data)


def dag_run(session: Session, dag_id: str, run_id: str, *, for_update: bool = False) -> DagRun:
    """The run, or NotFound (for a known DAG: the DAG has no such run)."""
    query = select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
    run = session.scalars(query.with_for_update() if for_update else query).first()
    if run is None:
        dag_row(session, dag_id)
        raise NotFound(f"DAG {dag_id!r} has no run {run_id!r} (see: crossdock dags list-runs -d {dag_id})")
    return run


def check_task_ids(dag: SerializedDAG, task_ids: list[str]) -> None:
    missing = sorted(set(task_ids) - set(dag.tasks))
    if missing:
        raise NotFound(f"DAG {dag.dag_id!r} has no task {', '.join(map(repr, missing))}; "
                       f"its tasks: {known_names(list(dag.tasks))}")


def utc_datetime(value: datetime | str | None, *, what: str) -> datetime | None:
    """``value`` as an aware UTC datetime (ISO-8601 text accepted; naive means UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise BadRequest(f"{what} {value!r} is not an ISO-8601 date") from None
    if not isinstance(value, datetime):
        raise BadRequest(f"{what} must be a date, not {type(value).__name__}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def task_instance_dict(ti: TaskInstance, **more: Any) -> dict[str, Any]:
    """What an action reports about one task instance it touched."""
    return {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "map_index": ti.map_index,
            "state": ti.state, "try_number": ti.try_number, **more}


def run_dict(run: DagRun) -> dict[str, Any]:
    """What an action reports about one DAG run (Airflow's field names)."""
    return {"dag_id": run.dag_id, "run_id": run.run_id, "run_type": run.run_type, "state": run.state,
            "logical_date": run.logical_date, "data_interval_start": run.data_interval_start,
            "data_interval_end": run.data_interval_end, "queued_at": run.queued_at,
            "start_date": run.start_date, "end_date": run.end_date, "conf": run.conf or {}}
