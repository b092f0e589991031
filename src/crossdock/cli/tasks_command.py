"""``crossdock tasks ...``: run one try, test or render a task, list tasks, states and logs."""

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
    from crossdock.cli.dags_command import parse_dags_folder_into_db
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
    from crossdock.runner.task_log import task_log_path

    ensure_migrated()
    try_number = args.try_number
    if try_number is None:
        with create_session() as session:
            try_number = session.scalar(select(TaskInstance.try_number).where(
                TaskInstance.dag_id == args.dag_id, TaskInstance.task_id == args.task_id,
                TaskInstance.run_id == args.run_id, TaskInstance.map_index == args.map_index))
        if not try_number:
            raise CliError(f"task {args.task_id!r} of run {args.run_id!r} of DAG {args.dag_id!r} has not run yet")
    path = task_log_path(dag_id=args.dag_id, task_id=args.task_id, run_id=args.run_id,
                         try_number=try_number, map_index=args.map_index)
    if not path.exists():
        raise CliError(f"no log for try {try_number} at {path}")
    print(path.read_text(errors="replace"), end="")
    return 0
