"""DAG runs as listed and shown, in Airflow's ``DAGRun`` shape.

``dag_id`` ``~`` lists the runs of every DAG, as Airflow's ``/dags/~/dagRuns`` does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crossdock.database import create_session, ensure_migrated
from crossdock.models import DagRun
from crossdock.operations.errors import BadRequest
from crossdock.operations.lookups import dag_row, dag_run
from crossdock.operations.reads.paging import DEFAULT_LIMIT, paged
from crossdock.state import DagRunState

#: The dag_id that means "every DAG" in a listing.
ALL_DAGS = "~"
#: How a listing may be ordered (``-`` first: newest first).
RUN_ORDERS = {"logical_date": DagRun.logical_date, "start_date": DagRun.start_date,
              "end_date": DagRun.end_date, "dag_run_id": DagRun.run_id}
RUN_STATES = tuple(state.value for state in DagRunState)


def run_dict(run: DagRun) -> dict[str, Any]:
    """One run with Airflow's field names (``execution_date`` is the logical date, as in Airflow 2)."""
    return {
        "dag_run_id": run.run_id, "dag_id": run.dag_id, "run_type": run.run_type, "state": run.state,
        "logical_date": run.logical_date, "execution_date": run.logical_date,
        "data_interval_start": run.data_interval_start, "data_interval_end": run.data_interval_end,
        "queued_at": run.queued_at, "start_date": run.start_date, "end_date": run.end_date,
        "external_trigger": run.run_type == "manual", "conf": run.conf or {},
        "last_scheduling_decision": None, "note": None,
    }


def list_dag_runs(dag_id: str, *, limit: int = DEFAULT_LIMIT, offset: int = 0, state: list[str] | None = None,
                  order_by: str = "-logical_date") -> dict[str, Any]:
    """``{"dag_runs": [...], "total_entries": N}``, newest first unless ``order_by`` says otherwise.

    :param dag_id: the DAG, or ``~`` for every DAG.
    :param state: only runs in one of these states.
    :param order_by: a field of :data:`RUN_ORDERS`, ``-`` first for descending.
    """
    field = order_by.lstrip("-")
    if field not in RUN_ORDERS:
        raise BadRequest(f"runs can be ordered by {', '.join(sorted(RUN_ORDERS))} (- first: descending), "
                         f"not {order_by!r}")
    bad = sorted(set(state or []) - set(RUN_STATES))
    if bad:
        raise BadRequest(f"a DAG run state is one of {', '.join(RUN_STATES)}, not {', '.join(map(repr, bad))}")
    column = RUN_ORDERS[field]
    descending = order_by.startswith("-")
    query = select(DagRun).order_by(column.desc() if descending else column.asc(),
                                    DagRun.id.desc() if descending else DagRun.id.asc())
    ensure_migrated()
    with create_session() as session:
        if dag_id != ALL_DAGS:
            dag_row(session, dag_id)
            query = query.where(DagRun.dag_id == dag_id)
        if state:
            query = query.where(DagRun.state.in_(state))
        runs, total = paged(session, query, limit=limit, offset=offset)
        return {"dag_runs": [run_dict(run) for run in runs], "total_entries": total}


def get_dag_run(dag_id: str, run_id: str) -> dict[str, Any]:
    """One run (NotFound for an unknown DAG or run)."""
    ensure_migrated()
    with create_session() as session:
        return run_dict(dag_run(session, dag_id, run_id))
