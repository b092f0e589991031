"""``crossdock demo``: trigger the example DAGs, show progress, end with a summary table.

The demo keeps its own database and logs under ``$CROSSDOCK_HOME/demo`` (or ``--home``)
so it never touches a user's own metadata, and it points the DAG folder at the example
DAGs shipped inside the package, so it works the same after ``pip install``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from crossdock.cli.errors import CliError

EXAMPLE_DAGS_FOLDER = Path(__file__).resolve().parent.parent / "example_dags"
#: Seconds between checks of whether the demo's runs have finished.
FINISH_CHECK_INTERVAL = 0.25
#: The demo's executor when none is given.
DEFAULT_DEMO_EXECUTOR = "CeleryKubernetesExecutor"
SUMMARY_COLUMNS = ["dag_id", "task_id", "state", "queue", "executor", "try_number", "duration"]


def _prepare_environment(home: Path, executor: str) -> None:
    """Point every crossdock setting the demo depends on at its own folder (children inherit it)."""
    home.mkdir(parents=True, exist_ok=True)
    for name in [n for n in os.environ if n.startswith("CROSSDOCK__") and n != "CROSSDOCK__LOGGING__LOGGING_LEVEL"]:
        del os.environ[name]  # the demo runs on the embedded defaults, whatever the shell says
    os.environ.pop("KUBECONFIG", None)
    os.environ.pop("CROSSDOCK_CONFIG", None)
    os.environ["CROSSDOCK_HOME"] = str(home)
    os.environ["CROSSDOCK__CORE__DAGS_FOLDER"] = str(EXAMPLE_DAGS_FOLDER)
    os.environ["CROSSDOCK__CORE__EXECUTOR"] = executor
    os.environ["CROSSDOCK__SCHEDULER__DAG_DIR_LIST_INTERVAL"] = "0"
    from crossdock.configuration import conf

    conf.reload()


class ProgressPrinter:
    """Prints one line per task start and finish, as the scheduler reports transitions."""

    MARKS = {"running": "▶ started ", "success": "✔ success ", "failed": "✘ failed  ",
             "up_for_retry": "↻ retry   ", "upstream_failed": "✘ upstream"}

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.started = time.monotonic()

    def __call__(self, ti, old_state, new_state) -> None:
        mark = self.MARKS.get(str(new_state))
        if mark is None:
            return
        elapsed = time.monotonic() - self.started
        detail = ""
        if new_state in ("failed", "up_for_retry") and ti.failure_reason:
            detail = f"  ({ti.failure_reason})"
        self.stream.write(f"[{elapsed:6.2f}s] {mark} {ti.dag_id}.{ti.task_id} try {ti.try_number}"
                          f" on {ti.queue}{detail}\n")
        self.stream.flush()


def demo(args) -> int:
    from crossdock.configuration import crossdock_home

    home = Path(args.home).expanduser() if args.home else crossdock_home() / "demo"
    if "CROSSDOCK__LOGGING__LOGGING_LEVEL" not in os.environ:
        # The progress lines and the summary are the demo's output; keep log lines to problems.
        logging.getLogger().setLevel(logging.WARNING)
    _prepare_environment(home, args.executor or DEFAULT_DEMO_EXECUTOR)

    from sqlalchemy import select, update

    from crossdock.operations.dag_parsing import parse_dags_folder_into_db
    from crossdock.cli.output import print_rows
    from crossdock.cli.scheduler_command import build_scheduler
    from crossdock.cli.services import EmbeddedServices
    from crossdock.database import create_session
    from crossdock.models import DagModel, DagRun, TaskInstance
    from crossdock.scheduler.dag_runs import MANUAL, create_dag_run

    print(f"crossdock demo: home {home}, executor {os.environ['CROSSDOCK__CORE__EXECUTOR']}")
    errors = parse_dags_folder_into_db()
    for path, error in errors.items():
        print(f"import error in {path}: {(error.strip().splitlines() or ['failed'])[0]}")  # the exception line
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
    with create_session() as session:
        dag_ids = sorted(session.scalars(select(DagModel.dag_id).where(DagModel.is_active.is_(True))))
        if args.dag:
            missing = sorted(set(args.dag) - set(dag_ids))
            if missing:
                raise CliError(f"no example DAG named {', '.join(missing)}; examples: {', '.join(dag_ids)}")
            dag_ids = sorted(args.dag)
        # New DAGs start paused ([core] dags_are_paused_at_creation); the demo runs what it triggers.
        session.execute(update(DagModel).where(DagModel.dag_id.in_(dag_ids)).values(is_paused=False))
        runs = [(dag_id, create_dag_run(session, dag_id=dag_id, run_type=MANUAL,
                                        run_id=f"demo__{stamp}").run_id) for dag_id in dag_ids]
    if not runs:
        raise CliError("no example DAGs were found")
    print(f"triggered {len(runs)} DAG runs: {', '.join(dag_id for dag_id, _ in runs)}")

    last_check = [0.0]

    def finished(_job) -> bool:
        now = time.monotonic()
        if now - last_check[0] < FINISH_CHECK_INTERVAL:
            return False
        last_check[0] = now
        with create_session() as session:
            states = session.execute(select(DagRun.state).where(
                DagRun.run_id == runs[0][1], DagRun.dag_id.in_([d for d, _ in runs]))).scalars().all()
        return len(states) == len(runs) and all(s in ("success", "failed") for s in states)

    started = time.monotonic()
    with EmbeddedServices.for_configured_executors() as services:
        for line in services.describe():
            print(line)
        job = build_scheduler(on_state_change=ProgressPrinter(), parse_dags=False)
        job.run(stop_when=finished, handle_signals=True)
    elapsed = time.monotonic() - started

    with create_session() as session:
        run_rows = session.execute(select(DagRun.dag_id, DagRun.state).where(
            DagRun.run_id == runs[0][1], DagRun.dag_id.in_([d for d, _ in runs]))).all()
        tis = session.scalars(select(TaskInstance).where(
            TaskInstance.run_id == runs[0][1], TaskInstance.dag_id.in_([d for d, _ in runs]))
            .order_by(TaskInstance.dag_id, TaskInstance.start_date, TaskInstance.task_id)).all()
        rows = [{column: getattr(ti, column) for column in SUMMARY_COLUMNS} for ti in tis]
    print()
    print_rows(rows, columns=SUMMARY_COLUMNS)
    print()
    failed = [dag_id for dag_id, state in run_rows if state != "success"]
    for dag_id, state in sorted(run_rows):
        print(f"run {runs[0][1]} of {dag_id}: {state}")
    print(f"{len(rows)} task instances in {elapsed:.2f} s; logs under {home / 'logs'}")
    return 1 if failed or len(run_rows) != len(runs) else 0
