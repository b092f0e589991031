"""Creating DAG runs: manual triggers (CLI, demo) and scheduled intervals.

A new run is written in state ``queued``; the scheduler alone moves it on from there.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crossdock.models import DagModel, DagRun
from crossdock.models.base import utcnow
from crossdock.state import DagRunState

MANUAL = "manual"
SCHEDULED = "scheduled"


class DagNotFoundError(LookupError):
    """Triggering a DAG id that no parsed DAG file defines."""


class DagRunExistsError(ValueError):
    """A run with that run_id already exists for the DAG."""


def run_id_for(run_type: str, logical_date: datetime) -> str:
    return f"{run_type}__{logical_date.astimezone(timezone.utc).isoformat()}"


def create_dag_run(session: Session, *, dag_id: str, run_type: str = MANUAL,
                   run_id: str | None = None, logical_date: datetime | None = None,
                   data_interval: tuple[datetime, datetime] | None = None,
                   conf: dict[str, Any] | None = None) -> DagRun:
    """Add a queued run; the caller commits. Fails clearly on an unknown DAG or a taken run_id."""
    dag = session.get(DagModel, dag_id)
    if dag is None or not dag.is_active:
        known = session.scalars(select(DagModel.dag_id).where(DagModel.is_active.is_(True))).all()
        hint = f"; known DAGs: {', '.join(sorted(known))}" if known else "; no DAGs are parsed yet"
        raise DagNotFoundError(f"DAG {dag_id!r} not found{hint}")
    now = utcnow()
    logical_date = logical_date or now
    run_id = run_id or run_id_for(run_type, logical_date)
    exists = session.scalar(select(DagRun.id).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if exists is not None:
        raise DagRunExistsError(f"DAG {dag_id!r} already has a run with run_id {run_id!r}")
    start, end = data_interval or (logical_date, logical_date)
    run = DagRun(dag_id=dag_id, run_id=run_id, run_type=run_type, logical_date=logical_date,
                 data_interval_start=start, data_interval_end=end,
                 state=DagRunState.QUEUED.value, queued_at=now, conf=conf or {})
    session.add(run)
    session.flush()
    return run
