"""``crossdock dags ...``: parse, list, trigger, inspect runs and import errors."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from sqlalchemy import select

from crossdock.cli.errors import CliError
from crossdock.cli.output import print_rows
from crossdock.database import create_session, ensure_migrated
from crossdock.models import DagImportError, DagModel, DagRun
from crossdock.scheduler.dag_runs import MANUAL, DagNotFoundError, DagRunCreationError, trigger_dag_run
from crossdock.state import DagRunState

#: Seconds between polls of ``dags trigger --wait``.
WAIT_POLL_INTERVAL = 0.2


def parse_dags_folder_into_db() -> dict[str, str]:
    """Parse the DAG folder in child processes and store the result; returns import errors."""
    from crossdock.configuration import conf
    from crossdock.dag.dag_store import store_parse_result
    from crossdock.dag.processor import parse_dag_folder

    ensure_migrated()
    result = parse_dag_folder(conf.getstr("core", "dags_folder"))
    store_parse_result(result)
    return result.import_errors


def list_dags(args) -> int:
    errors = parse_dags_folder_into_db()
    with create_session() as session:
        dags = session.scalars(select(DagModel).where(DagModel.is_active.is_(True)).order_by(DagModel.dag_id)).all()
        rows = [{"dag_id": d.dag_id, "fileloc": d.fileloc, "schedule": d.schedule, "paused": d.is_paused,
                 "tags": ",".join(d.tags or [])} for d in dags]
    print_rows(rows, columns=["dag_id", "fileloc", "schedule", "paused", "tags"], output=args.output)
    if errors and args.output == "table":
        print(f"\n{len(errors)} DAG file(s) failed to import; see: crossdock dags list-import-errors")
    return 0


def reserialize(_args) -> int:
    errors = parse_dags_folder_into_db()
    print(f"DAG folder parsed; {len(errors)} import error(s)")
    return 0


def _parse_logical_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--logical-date {text!r} is not an ISO-8601 date") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def trigger(args) -> int:
    run_conf = None
    if args.conf:
        try:
            run_conf = json.loads(args.conf)
        except json.JSONDecodeError as exc:
            raise CliError(f"--conf is not valid JSON: {exc}") from None
        if not isinstance(run_conf, dict):
            raise CliError("--conf must be a JSON object")
    logical_date = _parse_logical_date(args.logical_date)
    run_id = _trigger(args.dag_id, run_id=args.run_id, logical_date=logical_date, run_conf=run_conf)
    print(f"queued run {run_id!r} of DAG {args.dag_id!r}")
    if not args.wait:
        return 0
    state = wait_for_run(args.dag_id, run_id, timeout=args.timeout)
    print(f"run {run_id!r} finished: {state}")
    return 0 if state == DagRunState.SUCCESS else 1


def _trigger(dag_id: str, *, run_id: str | None, logical_date: datetime | None, run_conf: dict | None) -> str:
    """The committed run's id; any failure becomes a one-line :class:`CliError` (exit 1).

    A trigger must never end quietly without its run: whatever the database says on the
    way (a lock it kept, a lost connection) is reported, not swallowed.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from crossdock.database import describe_db_error

    try:
        return _patiently(lambda: _trigger_once(dag_id, run_id=run_id, logical_date=logical_date,
                                                run_conf=run_conf))
    except DagRunCreationError as exc:
        raise CliError(f"no run was created: {exc}") from None
    except SQLAlchemyError as exc:
        raise CliError(f"no run was created: {describe_db_error(exc)}") from None


#: Seconds a trigger keeps trying a database that turns connections away under load.
REFUSED_CONNECTION_PATIENCE = 30.0
_REFUSALS_UNDER_LOAD = ("too many clients", "remaining connection slots are reserved",
                        "the database system is starting up")


def _patiently(attempt):
    """``attempt()``, again after a jittered pause while the server refuses connections for load.

    PostgreSQL refuses connections beyond ``max_connections``; fifty triggers started
    together (with a scheduler and workers holding connections of their own) can meet
    that. Nothing was written when a connection was refused, so trying again is safe.
    """
    import random

    from sqlalchemy.exc import OperationalError

    from crossdock.database import DatabaseError

    deadline = time.monotonic() + REFUSED_CONNECTION_PATIENCE
    pause = 0.1
    while True:
        try:
            return attempt()
        except (DatabaseError, OperationalError) as exc:
            refused = any(sign in str(exc).lower() for sign in _REFUSALS_UNDER_LOAD)
            jittered = pause * random.uniform(0.5, 1.5)
            if not refused or time.monotonic() + jittered > deadline:
                raise  # the jittered pause, not the nominal one, decides: patience never overruns
        time.sleep(jittered)
        pause = min(pause * 2, 2.0)


def _trigger_once(dag_id: str, *, run_id: str | None, logical_date: datetime | None, run_conf: dict | None) -> str:
    ensure_migrated()
    with create_session() as session:
        known = session.get(DagModel, dag_id)
    if known is None:
        _parse_unless_known(dag_id)
    return trigger_dag_run(dag_id, run_type=MANUAL, run_id=run_id, logical_date=logical_date, conf=run_conf)


def _parse_unless_known(dag_id: str) -> None:
    """Parse the DAG folder so a DAG not seen yet can be triggered; one parse at a time per home.

    Many triggers of a new DAG at once would each parse the whole folder: on a small
    machine some parses then overrun ``[core] dagbag_import_timeout`` (the DAG looks
    missing, and a bogus import error is stored) and their concurrent writes can
    deadlock. Behind a lock in ``CROSSDOCK_HOME`` the first caller parses and the others
    find the DAG known when their turn comes.
    """
    import fcntl

    from sqlalchemy.exc import SQLAlchemyError

    from crossdock.configuration import crossdock_home

    home = crossdock_home()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "dags-parse.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with create_session() as session:
            if session.get(DagModel, dag_id) is not None:
                return
        try:
            errors = parse_dags_folder_into_db()
        except SQLAlchemyError:
            # A scheduler may be storing the same parse; what matters is that the DAG is known now.
            with create_session() as session:
                if session.get(DagModel, dag_id) is not None:
                    return
            raise
    with create_session() as session:
        known = session.get(DagModel, dag_id)
    if known is None and errors:
        failed = "; ".join(f"{path}: {(error.strip().splitlines() or ['failed'])[0]}" for path, error in sorted(errors.items()))
        raise DagNotFoundError(dag_id, f"DAG {dag_id!r} not found; the DAG folder has import errors: {failed}")


def wait_for_run(dag_id: str, run_id: str, *, timeout: float | None) -> str:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with create_session() as session:
            state = session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if state in (DagRunState.SUCCESS, DagRunState.FAILED):
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise CliError(f"run {run_id!r} of {dag_id!r} is still {state} after {timeout} s "
                           f"(is a scheduler running?)")
        time.sleep(WAIT_POLL_INTERVAL)


def list_runs(args) -> int:
    ensure_migrated()
    query = select(DagRun).order_by(DagRun.id.desc())
    if args.dag_id:
        query = query.where(DagRun.dag_id == args.dag_id)
    if args.state:
        query = query.where(DagRun.state == args.state)
    with create_session() as session:
        rows = [{"dag_id": r.dag_id, "run_id": r.run_id, "state": r.state, "run_type": r.run_type,
                 "logical_date": r.logical_date, "start_date": r.start_date, "end_date": r.end_date}
                for r in session.scalars(query)]
    print_rows(rows, columns=["dag_id", "run_id", "state", "run_type", "logical_date", "start_date", "end_date"],
               output=args.output)
    return 0


def list_import_errors(args) -> int:
    ensure_migrated()
    with create_session() as session:
        rows = [{"filename": e.filename, "timestamp": e.timestamp, "error": e.stacktrace}
                for e in session.scalars(select(DagImportError).order_by(DagImportError.filename))]
    if args.output == "json":
        print_rows(rows, columns=["filename", "timestamp", "error"], output="json")
    elif not rows:
        print("no import errors")
    else:
        for row in rows:
            print(f"{row['filename']}:\n  " + row["error"].strip().replace("\n", "\n  ") + "\n")
    return 0


def state(args) -> int:
    ensure_migrated()
    with create_session() as session:
        value = session.scalar(select(DagRun.state).where(DagRun.dag_id == args.dag_id,
                                                          DagRun.run_id == args.run_id))
    if value is None:
        raise CliError(f"DAG {args.dag_id!r} has no run {args.run_id!r}")
    print(value)
    return 0


def _set_paused(dag_id: str, paused: bool) -> None:
    ensure_migrated()
    with create_session() as session:
        dag = session.get(DagModel, dag_id)
        if dag is None:
            raise DagNotFoundError(dag_id)
        dag.is_paused = paused
    print(f"DAG {dag_id!r} {'paused' if paused else 'unpaused'}")


def pause(args) -> int:
    _set_paused(args.dag_id, True)
    return 0


def unpause(args) -> int:
    _set_paused(args.dag_id, False)
    return 0
