"""Creating DAG runs: manual triggers (CLI, demo) and scheduled intervals.

A new run is written in state ``queued``; the scheduler alone moves it on from there.

Manual run ids are ``manual__<logical date>``, as in Airflow. Two triggers in the same
microsecond (many clients at once, a coarse clock) would get the same one; when the id
and the date were not given, the later trigger moves its logical date on by a
microsecond and takes the next id instead of failing. :func:`trigger_dag_run` does the
whole write in its own transactions and retries what a concurrent writer can cause (a
unique-key race, SQLite's "database is locked", a PostgreSQL deadlock), so a caller gets
either a committed run or :class:`DagRunCreationError` with the reason.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from crossdock.dag.exceptions import DagNotFound
from crossdock.dag.param import ParamValidationError, validate_run_conf
from crossdock.exceptions import UserFacingError
from crossdock.models import DagModel, DagRun, SerializedDagModel
from crossdock.models.base import utcnow
from crossdock.state import DagRunState

MANUAL = "manual"
SCHEDULED = "scheduled"
#: Runs a backfill created for past intervals; they run even while their DAG is paused.
BACKFILL = "backfill"


#: Triggering a DAG id that no parsed DAG file defines is the same error as loading one;
#: the older name stays importable.
DagNotFoundError = DagNotFound


class DagRunExistsError(UserFacingError, ValueError):
    """A run with that run_id already exists for the DAG."""


class DagRunCreationError(UserFacingError, RuntimeError):
    """The run could not be written (the database kept refusing); the message says why."""


#: Generated run ids tried before a trigger gives up on finding a free one.
RUN_ID_ATTEMPTS = 50
#: Attempts at the whole write when a concurrent writer got in the way, and the first pause.
WRITE_ATTEMPTS = 8
WRITE_RETRY_PAUSE = 0.05
ONE_MICROSECOND = timedelta(microseconds=1)


def run_id_for(run_type: str, logical_date: datetime) -> str:
    return f"{run_type}__{logical_date.astimezone(timezone.utc).isoformat()}"


def create_dag_run(session: Session, *, dag_id: str, run_type: str = MANUAL,
                   run_id: str | None = None, logical_date: datetime | None = None,
                   data_interval: tuple[datetime, datetime] | None = None,
                   conf: dict[str, Any] | None = None) -> DagRun:
    """Add a queued run; the caller commits. Fails clearly on an unknown DAG or a taken run_id.

    ``conf`` must satisfy the DAG's params (read from its serialized form, not its file):
    otherwise :class:`~crossdock.dag.param.ParamValidationError` names the param and the
    rule, and nothing is added.
    """
    dag = session.get(DagModel, dag_id)
    if dag is None or not dag.is_active:
        known = session.scalars(select(DagModel.dag_id).where(DagModel.is_active.is_(True))).all()
        hint = f"; known DAGs: {', '.join(sorted(known))}" if known else "; no DAGs are parsed yet"
        raise DagNotFoundError(dag_id, f"DAG {dag_id!r} not found{hint}")
    _check_conf(session, dag_id, conf)
    now = utcnow()
    free_to_move = run_id is None and logical_date is None
    logical_date = logical_date or now
    for _ in range(RUN_ID_ATTEMPTS):
        candidate = run_id or run_id_for(run_type, logical_date)
        exists = session.scalar(select(DagRun.id).where(DagRun.dag_id == dag_id, DagRun.run_id == candidate))
        if exists is None:
            run_id = candidate
            break
        if not free_to_move:
            raise DagRunExistsError(f"DAG {dag_id!r} already has a run with run_id {candidate!r}")
        logical_date = max(utcnow(), logical_date + ONE_MICROSECOND)
    else:
        raise DagRunCreationError(f"no free run_id for DAG {dag_id!r} after {RUN_ID_ATTEMPTS} tries")
    start, end = data_interval or (logical_date, logical_date)
    run = DagRun(dag_id=dag_id, run_id=run_id, run_type=run_type, logical_date=logical_date,
                 data_interval_start=start, data_interval_end=end,
                 state=DagRunState.QUEUED.value, queued_at=now, conf=conf or {})
    session.add(run)
    session.flush()
    return run


def _check_conf(session: Session, dag_id: str, conf: dict[str, Any] | None) -> None:
    """Raise :class:`ParamValidationError` unless ``conf`` over the DAG's params validates."""
    # Only the params key: a big DAG's serialized tasks are not worth reading for this.
    params = session.scalar(select(SerializedDagModel.data["params"]).where(SerializedDagModel.dag_id == dag_id))
    try:
        validate_run_conf(params, conf)
    except ParamValidationError as exc:
        raise exc.within(f"no run of DAG {dag_id!r} was created") from None


def _transient(exc: DBAPIError) -> bool:
    """A failure a concurrent writer causes and a new transaction can get past."""
    text = str(getattr(exc, "orig", exc)).lower()
    return any(sign in text for sign in ("database is locked", "database table is locked", "deadlock detected",
                                         "could not serialize access"))


def trigger_dag_run(dag_id: str, *, run_type: str = MANUAL, run_id: str | None = None,
                    logical_date: datetime | None = None, conf: dict[str, Any] | None = None) -> str:
    """Create a queued run and commit it; its run_id. Nothing is returned unless the run is stored.

    Raises :class:`DagNotFoundError`, :class:`DagRunExistsError` (a taken ``run_id`` or
    logical date the caller chose), :class:`~crossdock.dag.param.ParamValidationError`
    (``conf`` breaks one of the DAG's params) or :class:`DagRunCreationError` (the database refused
    the write ``WRITE_ATTEMPTS`` times, with its reason); other database errors propagate.
    A generated run_id that a concurrent trigger committed first (the unique key says so)
    is simply retried: the next attempt sees it and takes the next microsecond.
    """
    from crossdock.database import create_session, describe_db_error

    pause = WRITE_RETRY_PAUSE
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            with create_session() as session:
                run = create_dag_run(session, dag_id=dag_id, run_type=run_type, run_id=run_id,
                                     logical_date=logical_date, conf=conf)
                created = run.run_id
            return created
        except IntegrityError as exc:
            if run_id is not None or logical_date is not None:
                raise DagRunExistsError(f"DAG {dag_id!r} already has a run with run_id "
                                        f"{run_id or run_id_for(run_type, logical_date)!r}") from None
            failure = exc
        except OperationalError as exc:
            if not _transient(exc):
                raise
            failure = exc
        if attempt < WRITE_ATTEMPTS:
            time.sleep(pause)
            pause *= 2
    raise DagRunCreationError(f"could not create a run of DAG {dag_id!r} after {WRITE_ATTEMPTS} attempts: "
                              f"{describe_db_error(failure)}")
