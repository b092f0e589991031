"""Pausing and unpausing a DAG.

A paused DAG gets no scheduled runs, and its manual runs wait in ``queued`` until it is
unpaused (Airflow's rule); the scheduler reads the flag every time it looks, so the
change counts from its next loop step. Backfill runs are the exception: they are asked
for explicitly and run either way. New DAGs start paused while
``[core] dags_are_paused_at_creation`` is true (the default, as in Airflow).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from crossdock.database import create_session, ensure_migrated
from crossdock.models import DagRun
from crossdock.operations.lookups import dag_row
from crossdock.state import DagRunState


def set_paused(dag_id: str, *, paused: bool) -> dict[str, Any]:
    """Pause (``paused=True``) or unpause a DAG; its id, new flag and how many runs wait queued."""
    ensure_migrated()
    with create_session() as session:
        dag = dag_row(session, dag_id)
        dag.is_paused = bool(paused)
        queued = session.scalar(select(func.count()).select_from(DagRun).where(
            DagRun.dag_id == dag_id, DagRun.state == DagRunState.QUEUED.value))
        return {"dag_id": dag_id, "is_paused": dag.is_paused, "queued_runs": queued}
