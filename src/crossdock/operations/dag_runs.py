"""Triggering a DAG and deleting runs (and a DAG's whole history).

A triggered run is written ``queued``; the scheduler starts it (a paused DAG's run waits
in ``queued`` until the DAG is unpaused, as in Airflow). A trigger never ends quietly
without its run: every failure on the way becomes an
:class:`~crossdock.operations.errors.OperationError` saying why.

Deleting respects design principle 1: a run the active scheduler is working on is not
pulled from under it. A finished run, a queued run of a paused DAG, or any run while no
scheduler is active (the transaction then holds the free lease) is deleted with its task
instances, XComs and pending requests; otherwise the answer is a
:class:`~crossdock.operations.errors.Conflict` saying what to do first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from crossdock.database import create_session, describe_db_error, ensure_migrated
from crossdock.models import DagImportError, DagModel, DagRun, SerializedDagModel, StateRequest, TaskInstance, XCom
from crossdock.operations.dag_parsing import parse_unless_known
from crossdock.operations.db_retry import patiently
from crossdock.operations.errors import BadRequest, Conflict, NotFound, Unavailable
from crossdock.operations.lookups import dag_row, dag_run, run_dict, utc_datetime
from crossdock.scheduler.leadership import active_job_id, hold_free_lease
from crossdock.scheduler.state_changes import FINISHED_RUN_STATES
from crossdock.state import DagRunState


def trigger_dag(dag_id: str, *, run_id: str | None = None, conf: dict[str, Any] | None = None,
                logical_date: datetime | str | None = None) -> dict[str, Any]:
    """Queue a manual run of ``dag_id``; the stored run (with ``dag_is_paused``).

    :param run_id: the run's id (default ``manual__<logical date>``); a taken one is a Conflict.
    :param conf: a JSON object handed to the run; it must satisfy the DAG's params.
    :param logical_date: the run's logical date (default: now); ISO-8601 text is accepted.

    A DAG not parsed yet is parsed first, so a DAG file just written can be triggered.
    """
    from crossdock.dag.exceptions import DagNotFound
    from crossdock.dag.param import ParamValidationError
    from crossdock.scheduler.dag_runs import MANUAL, DagRunCreationError, DagRunExistsError, trigger_dag_run

    if conf is not None and not isinstance(conf, dict):
        raise BadRequest("conf must be a JSON object")
    when = utc_datetime(logical_date, what="logical date")

    def attempt() -> str:
        ensure_migrated()
        parse_unless_known(dag_id)
        return trigger_dag_run(dag_id, run_type=MANUAL, run_id=run_id, logical_date=when, conf=conf)

    try:
        created = patiently(attempt)
    except DagNotFound as exc:
        raise NotFound(str(exc)) from None
    except DagRunExistsError as exc:
        raise Conflict(str(exc)) from None
    except ParamValidationError as exc:
        raise BadRequest(str(exc)) from None
    except DagRunCreationError as exc:
        raise Unavailable(f"no run was created: {exc}") from None
    except SQLAlchemyError as exc:
        raise Unavailable(f"no run was created: {describe_db_error(exc)}") from None
    with create_session() as session:
        run = dag_run(session, dag_id, created)
        paused = session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag_id))
        return {**run_dict(run), "dag_is_paused": bool(paused)}


def delete_dag_run(dag_id: str, run_id: str) -> None:
    """Delete one run with its task instances, XComs and pending requests (see the module docstring)."""
    ensure_migrated()
    with create_session() as session:
        run = dag_run(session, dag_id, run_id, for_update=True)
        _check_deletable(session, [run])
        _delete_runs(session, dag_id, [run_id])


def delete_dag(dag_id: str) -> dict[str, Any]:
    """Delete everything stored about ``dag_id``: its runs and their task instances, its parse.

    The DAG file is not touched: while it exists the next parse stores the DAG again
    (paused, under ``[core] dags_are_paused_at_creation``). Refused while a run of it is
    being worked on by the active scheduler.
    """
    ensure_migrated()
    with create_session() as session:
        dag = dag_row(session, dag_id)
        runs = list(session.scalars(select(DagRun).where(DagRun.dag_id == dag_id).with_for_update()))
        _check_deletable(session, runs)
        _delete_runs(session, dag_id, [run.run_id for run in runs])
        session.execute(delete(SerializedDagModel).where(SerializedDagModel.dag_id == dag_id))
        fileloc = dag.fileloc
        session.delete(dag)
        session.flush()
        if fileloc and session.scalar(select(DagModel.dag_id).where(DagModel.fileloc == fileloc).limit(1)) is None:
            session.execute(delete(DagImportError).where(DagImportError.filename == fileloc))
        return {"dag_id": dag_id, "runs_deleted": len(runs)}


def _check_deletable(session: Session, runs: list[DagRun]) -> None:
    """Conflict unless no active scheduler may be working on any of ``runs``."""
    busy = [run for run in runs if run.state not in FINISHED_RUN_STATES]
    if not busy:
        return
    paused = bool(session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == busy[0].dag_id)
                                 .with_for_update()))
    if paused and all(run.state == DagRunState.QUEUED.value for run in busy):
        return  # waiting for an unpause: no scheduler loads them meanwhile
    if hold_free_lease(session):
        return  # no scheduler is active; none can become active before this commits
    run = next(run for run in busy if run.state != DagRunState.QUEUED.value or not paused)
    raise Conflict(f"run {run.run_id!r} of DAG {run.dag_id!r} is {run.state} and the scheduler "
                   f"(job {active_job_id(session)}) is working on it; mark its unfinished tasks failed "
                   f"(crossdock tasks mark-failed) or wait until it finishes, then delete it")


def _delete_runs(session: Session, dag_id: str, run_ids: list[str]) -> None:
    if not run_ids:
        return
    for model in (TaskInstance, XCom, StateRequest):
        session.execute(delete(model).where(model.dag_id == dag_id, model.run_id.in_(run_ids)))
    session.execute(delete(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id.in_(run_ids)))

