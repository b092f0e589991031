"""``crossdock tasks ...``: run one try, test or render a task, list tasks, states and logs;
clear and mark task instances (through :mod:`crossdock.operations`, as the API and UI do)."""

from __future__ import annotations

from sqlalchemy import select

from crossdock.cli.errors import CliError
from crossdock.cli.output import print_rows
from crossdock.database import create_session, ensure_migrated
from crossdock.exceptions import UserFacingError
from crossdock.models import DagRun, SerializedDagModel, TaskInstance

STATE_COLUMNS = ["task_id", "map_index", "state", "queue", "executor", "try_number", "duration", "hostname",
                 "start_date", "end_date", "failure_reason", "routing_reason"]


def run(args) -> int:
    from crossdock.runner.task_runner import run_task

    return run_task(list(args.task_args))


def test(args) -> int:
    from crossdock.runner.task_runner import run_task_test

    argv = [args.dag_id, args.task_id] + (["--subdir", args.subdir] if args.subdir else [])
    if getattr(args, "logical_date", None):
        argv += ["--logical-date", args.logical_date]
    return run_task_test(argv)


def render(args) -> int:
    """Print each template field of a task as the try would render it for one logical date.

    Nothing runs and no database is opened: the DAG file is loaded as ``tasks test``
    loads it, and the date defaults to now.
    """
    from datetime import datetime, timezone

    from crossdock.dag.loader import get_dag
    from crossdock.models.taskinstancekey import TaskInstanceKey
    from crossdock.runner.command import logical_date_option
    from crossdock.runner.context import RuntimeTaskInstance, build_context
    from crossdock.runner.task_runner import TEST_RUN_ID_PREFIX
    from crossdock.runner.templating import render_template_fields, template_field_values

    logical_date = logical_date_option(args.logical_date) or datetime.now(timezone.utc).replace(microsecond=0)
    task = get_dag(args.dag_id, subdir=args.subdir).get_task(args.task_id)
    key = TaskInstanceKey(args.dag_id, args.task_id, f"{TEST_RUN_ID_PREFIX}{logical_date.isoformat()}", 1, -1)
    ti = RuntimeTaskInstance(key, logical_date=logical_date)
    try:
        render_template_fields(task, build_context(dag=task.dag, task=task, ti=ti, test_mode=True))
    except UserFacingError:
        raise
    except Exception as exc:  # a macro or filter of the DAG's own raised: still one line
        raise CliError(f"cannot render task {args.task_id!r}: {type(exc).__name__}: {exc}") from exc
    from crossdock.secrets.masking import redact

    for name, value in template_field_values(task):  # secrets the templates read show as ***
        print(f"# {name}\n{redact(str(value))}")
    return 0


def list_tasks(args) -> int:
    from crossdock.operations.dag_parsing import parse_dags_folder_into_db
    from crossdock.dag.serialization import SerializedDAG

    parse_dags_folder_into_db()
    with create_session() as session:
        row = session.get(SerializedDagModel, args.dag_id)
    if row is None:
        raise CliError(f"DAG {args.dag_id!r} not found (see: crossdock dags list, crossdock dags list-import-errors)")
    dag = SerializedDAG.from_dict(row.data)
    rows = [{"task_id": t.task_id, "task_type": t.task_type, "queue": t.queue, "pool": t.pool,
             "priority_weight": t.priority_weight, "retries": t.retries, "executor": t.executor,
             "upstream": ",".join(sorted(t.upstream_task_ids))}
            for t in (dag.tasks[task_id] for task_id in sorted(dag.tasks))]
    print_rows(rows, columns=["task_id", "task_type", "queue", "pool", "priority_weight", "retries",
                              "executor", "upstream"], output=args.output)
    return 0


def task_state_rows(dag_id: str, run_id: str) -> list[dict]:
    with create_session() as session:
        if session.scalar(select(DagRun.id).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)) is None:
            raise CliError(f"DAG {dag_id!r} has no run {run_id!r}")
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                         TaskInstance.run_id == run_id)
                              .order_by(TaskInstance.start_date, TaskInstance.task_id, TaskInstance.map_index)).all()
        return [{column: getattr(ti, column) for column in STATE_COLUMNS} for ti in tis]


def states_for_dag_run(args) -> int:
    ensure_migrated()
    print_rows(task_state_rows(args.dag_id, args.run_id), columns=STATE_COLUMNS, output=args.output)
    return 0


def xcom(args) -> int:
    """The values one task instance pushed, by key, as the pulling task gets them (JSON)."""
    import json

    from crossdock.dag.xcom_values import deserialize_value
    from crossdock.models import XCom

    ensure_migrated()
    with create_session() as session:
        if session.scalar(select(DagRun.id).where(DagRun.dag_id == args.dag_id,
                                                  DagRun.run_id == args.run_id)) is None:
            raise CliError(f"DAG {args.dag_id!r} has no run {args.run_id!r}")
        query = select(XCom.key, XCom.value, XCom.timestamp).where(
            XCom.dag_id == args.dag_id, XCom.run_id == args.run_id, XCom.task_id == args.task_id,
            XCom.map_index == args.map_index).order_by(XCom.key)
        if args.key:
            query = query.where(XCom.key == args.key)
        rows = session.execute(query).all()
    if not rows:
        which = f"XCom {args.key!r}" if args.key else "XComs"
        raise CliError(f"task {args.task_id!r} of run {args.run_id!r} of DAG {args.dag_id!r} has no {which}")
    if args.output == "json":
        print(json.dumps({row.key: deserialize_value(row.value) for row in rows}, default=str, indent=2))
        return 0
    print_rows([{"key": row.key, "value": row.value, "timestamp": row.timestamp} for row in rows],
               columns=["key", "value", "timestamp"], output=args.output)
    return 0


def logs(args) -> int:
    """Print one try's log; a DAG, run or task that does not exist is named as such, not as "not run yet"."""
    from crossdock.operations.lookups import dag_run
    from crossdock.runner.task_log import task_log_path

    ensure_migrated()
    with create_session() as session:
        dag_run(session, args.dag_id, args.run_id)
        ti = session.scalar(select(TaskInstance).where(
            TaskInstance.dag_id == args.dag_id, TaskInstance.task_id == args.task_id,
            TaskInstance.run_id == args.run_id, TaskInstance.map_index == args.map_index))
    if ti is None:
        index = f" with map index {args.map_index}" if args.map_index >= 0 else ""
        raise CliError(f"run {args.run_id!r} of DAG {args.dag_id!r} has no task instance of "
                       f"{args.task_id!r}{index} (see: crossdock tasks states-for-dag-run {args.dag_id} {args.run_id})")
    try_number = args.try_number
    if try_number is None:
        try_number = ti.try_number
        if not try_number:
            raise CliError(f"task {args.task_id!r} of run {args.run_id!r} of DAG {args.dag_id!r} has not run yet "
                           f"(it is {ti.state or 'waiting for its upstream tasks'})")
    path = task_log_path(dag_id=args.dag_id, task_id=args.task_id, run_id=args.run_id,
                         try_number=try_number, map_index=args.map_index)
    if not path.exists():
        raise CliError(f"no log for try {try_number} at {path}")
    print(path.read_text(errors="replace"), end="")
    return 0


#: Seconds ``tasks clear`` and ``mark-*`` wait for the active scheduler to apply their request.
REQUEST_WAIT_SECONDS = 10.0
CHANGE_COLUMNS = ["run_id", "task_id", "map_index", "state", "try_number"]
#: How ``mark-*`` lists what it did: marked, or cleared to run again below a success.
ACTION_LABELS = {"success": "mark success", "failed": "mark failed", "clear": "resume (clear)"}


def clear(args) -> int:
    """``tasks clear``: list what would be cleared, ask (unless -y), clear, say how it was applied."""
    from crossdock.cli.prompts import confirm
    from crossdock.operations.clearing import clear_task_instances

    options = dict(task_regex=args.task_regex, run_id=args.run_id, start_date=args.start_date,
                   end_date=args.end_date, downstream=args.downstream, upstream=args.upstream,
                   only_failed=args.only_failed, only_running=args.only_running, include_past=args.include_past,
                   include_future=args.include_future, map_indexes=args.map_indexes)
    ensure_migrated()
    planned = clear_task_instances(args.dag_id, dry_run=True, **options)
    if not planned:
        print("no task instances to clear")
        return 0
    print_rows(planned, columns=CHANGE_COLUMNS)
    if not confirm(f"Clear these {len(planned)} task instance(s)?", yes=args.yes):
        print("cancelled; nothing was cleared")
        return 0
    _say_delivered(clear_task_instances(args.dag_id, **options), "cleared")
    return 0


def mark_success(args) -> int:
    return _mark(args, "success")


def mark_failed(args) -> int:
    return _mark(args, "failed")


def _mark(args, state: str) -> int:
    from crossdock.operations.marking import mark_task_instances

    rows = mark_task_instances(args.dag_id, run_id=args.run_id, task_ids=[args.task_id], state=state,
                               downstream=args.downstream, upstream=args.upstream, past=args.include_past,
                               future=args.include_future, map_indexes=args.map_indexes)
    if not rows:
        print(f"nothing to mark: the task instances are {state} already")
        return 0
    print_rows([{**row, "action": ACTION_LABELS[row["action"]]} for row in rows], columns=["action", *CHANGE_COLUMNS])
    resumed = any(row["action"] == "clear" for row in rows)
    _say_delivered(rows, f"marked {state}" + (" or resumed" if resumed else ""))
    return 0


def _say_delivered(rows: list[dict], verb: str) -> None:
    """One line: applied now, applied by the scheduler, or requested and not applied yet."""
    from crossdock.operations.state_delivery import Delivery, scheduler_status, wait_until_applied

    count = f"{len(rows)} task instance(s) {verb}"
    request_ids = sorted({row["request_id"] for row in rows if row["request_id"] is not None})
    if not request_ids:
        print(f"{count} (written directly: no scheduler is active)")
        return
    status = scheduler_status()
    if wait_until_applied(Delivery(applied=False, request_ids=request_ids), timeout=REQUEST_WAIT_SECONDS):
        print(f"{count} by scheduler job {status['job_id']}")
        return
    print(f"{count}: requested from scheduler job {status['job_id']}, which has not applied it after "
          f"{REQUEST_WAIT_SECONDS:g} s; it applies it in its next loop step, or the scheduler that takes over "
          f"does (see: crossdock jobs check)")
