"""``crossdock dags ...``: parse, list, trigger, pause, backfill, delete, inspect runs and import errors.

The actions are :mod:`crossdock.operations`' (the REST API and the web UI call the same
functions); this module only turns arguments into calls and results into lines.
"""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from crossdock.cli.errors import CliError
from crossdock.cli.output import print_rows
from crossdock.cli.progress import ProgressLine, backfill_progress_text, run_progress_text
from crossdock.cli.prompts import confirm
from crossdock.database import create_session, ensure_migrated
from crossdock.models import DagImportError, DagModel, DagRun
from crossdock.operations.dag_parsing import parse_dags_folder_into_db
from crossdock.operations.dag_runs import delete_dag, delete_dag_run, trigger_dag
from crossdock.operations.lookups import utc_datetime
from crossdock.operations.pausing import set_paused
from crossdock.operations.progress import run_progress
from crossdock.state import DagRunState

#: Seconds between polls of ``dags trigger --wait``.
WAIT_POLL_INTERVAL = 0.2
#: Runs a backfill that did not fully succeed names, at most.
MAX_FAILED_SHOWN = 10


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


def trigger(args) -> int:
    run_conf = None
    if args.conf:
        try:
            run_conf = json.loads(args.conf)
        except json.JSONDecodeError as exc:
            raise CliError(f"--conf is not valid JSON: {exc}") from None
        if not isinstance(run_conf, dict):
            raise CliError("--conf must be a JSON object")
    logical_date = utc_datetime(args.logical_date, what="--logical-date")
    run = trigger_dag(args.dag_id, run_id=args.run_id, logical_date=logical_date, conf=run_conf)
    run_id = run["run_id"]
    print(f"queued run {run_id!r} of DAG {args.dag_id!r}")
    if run["dag_is_paused"]:
        print(f"DAG {args.dag_id!r} is paused: the run waits in queued until: crossdock dags unpause {args.dag_id}")
    if not args.wait:
        return 0
    state = wait_for_run(args.dag_id, run_id, timeout=args.timeout)
    print(f"run {run_id!r} finished: {state}")
    return 0 if state == DagRunState.SUCCESS else 1


def wait_for_run(dag_id: str, run_id: str, *, timeout: float | None, stream=None) -> str:
    """Wait for the run to finish, showing its tasks' progress; its final state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    line = ProgressLine(stream)
    try:
        while True:
            progress = run_progress(dag_id, run_id)
            line.show(run_progress_text(progress))
            if progress["state"] in (DagRunState.SUCCESS, DagRunState.FAILED):
                return progress["state"]
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(f"run {run_id!r} of {dag_id!r} is still {progress['state']} after {timeout} s "
                               f"(is a scheduler running?)")
            time.sleep(WAIT_POLL_INTERVAL)
    finally:
        line.close()


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
    result = set_paused(dag_id, paused=paused)
    print(f"DAG {dag_id!r} {'paused' if paused else 'unpaused'}")
    if result["queued_runs"]:
        print(f"{result['queued_runs']} queued run(s) "
              f"{'wait until it is unpaused' if paused else 'start as the scheduler takes them up'}")


def pause(args) -> int:
    _set_paused(args.dag_id, True)
    return 0


def unpause(args) -> int:
    _set_paused(args.dag_id, False)
    return 0


def delete_run(args) -> int:
    delete_dag_run(args.dag_id, args.run_id)
    print(f"deleted run {args.run_id!r} of DAG {args.dag_id!r} with its task instances")
    return 0


def delete(args) -> int:
    if not confirm(f"Delete every run, task instance and stored parse of DAG {args.dag_id!r}?", yes=args.yes):
        print("cancelled; nothing was deleted")
        return 0
    result = delete_dag(args.dag_id)
    print(f"deleted DAG {args.dag_id!r} and its {result['runs_deleted']} run(s); while its file is in the "
          f"DAG folder it is stored again by the next parse")
    return 0


def backfill(args) -> int:
    from crossdock.operations.backfill import backfill as run_backfill
    from crossdock.operations.state_delivery import scheduler_status

    if args.reset_dagruns and not confirm(
            f"Clear the task instances of the existing runs of {args.dag_id!r} from {args.start_date} "
            f"to {args.end_date} so they run again?", yes=args.yes):
        print("cancelled; nothing was changed")
        return 0
    if not scheduler_status()["alive"]:
        print("no scheduler is running: the runs wait in queued until one starts (crossdock scheduler)")
    line = ProgressLine()
    try:
        runs = run_backfill(args.dag_id, start_date=args.start_date, end_date=args.end_date,
                            reset_dagruns=args.reset_dagruns,
                            progress=lambda progress: line.show(backfill_progress_text(progress)))
    finally:
        line.close()
    failed = [run["run_id"] for run in runs if run["state"] != DagRunState.SUCCESS]
    print(f"backfill of {args.dag_id!r}: {len(runs) - len(failed)} of {len(runs)} run(s) succeeded")
    for run_id in failed[:MAX_FAILED_SHOWN]:
        print(f"  not successful: {run_id} (see: crossdock tasks states-for-dag-run {args.dag_id} {run_id})")
    return 0 if not failed else 1
