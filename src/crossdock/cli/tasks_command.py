"""``crossdock tasks ...``: run one try, test a task, list tasks, states and logs."""

from __future__ import annotations

from sqlalchemy import select

from crossdock.cli.errors import CliError
from crossdock.cli.output import print_rows
from crossdock.database import create_session, ensure_migrated
from crossdock.models import DagRun, SerializedDagModel, TaskInstance

STATE_COLUMNS = ["task_id", "state", "queue", "executor", "try_number", "duration", "hostname",
                 "start_date", "end_date", "failure_reason", "routing_reason"]


def run(args) -> int:
    from crossdock.runner.task_runner import run_task

    return run_task(list(args.task_args))


def test(args) -> int:
    from crossdock.runner.task_runner import run_task_test

    argv = [args.dag_id, args.task_id] + (["--subdir", args.subdir] if args.subdir else [])
    return run_task_test(argv)


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
                              .order_by(TaskInstance.start_date, TaskInstance.task_id)).all()
        return [{column: getattr(ti, column) for column in STATE_COLUMNS} for ti in tis]


def states_for_dag_run(args) -> int:
    ensure_migrated()
    print_rows(task_state_rows(args.dag_id, args.run_id), columns=STATE_COLUMNS, output=args.output)
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
