"""A DAG's ``on_success_callback`` / ``on_failure_callback``, run in a process of its own.

User code never runs inside the scheduler: when a run of a DAG that has such a callback
ends, the scheduler starts ``python -m crossdock.runner.dag_callback`` (see
:mod:`crossdock.scheduler.dag_callbacks`). This process has the environment a try has
(no database, broker or other crossdock secret), imports the DAG file, calls the
callbacks with a context (``dag``, ``dag_run``, ``run_id``, ``reason``...) and writes what
they print to ``{base_log_folder}/dag_id=…/run_id=…/dag_callback.log``. A callback that
raises or runs past ``[core] task_callback_timeout`` is logged there; the run's state is
already decided and does not change.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

from crossdock.configuration import conf
from crossdock.runner.task_log import safe_path_segment

log = logging.getLogger("crossdock.dag_callback")


def callback_log_path(dag_id: str, run_id: str) -> Path:
    root = Path(conf.getstr("logging", "base_log_folder")).expanduser()
    return root / f"dag_id={safe_path_segment(dag_id)}" / f"run_id={safe_path_segment(run_id)}" / "dag_callback.log"


def callback_command(*, dag_id: str, run_id: str, state: str, reason: str, subdir: str | None,
                     logical_date: str | None, run_type: str | None) -> list[str]:
    command = [sys.executable, "-m", "crossdock.runner.dag_callback", dag_id, run_id, state, "--reason", reason]
    for option, value in (("--subdir", subdir), ("--logical-date", logical_date), ("--run-type", run_type)):
        if value:
            command += [option, value]
    return command


def _run(args: argparse.Namespace) -> int:
    from crossdock.dag.loader import get_dag
    from crossdock.runner.callbacks import run_callbacks
    from crossdock.runner.command import parse_logical_date
    from crossdock.runner.context import RuntimeDagRun

    dag = get_dag(args.dag_id, subdir=args.subdir)
    logical_date = parse_logical_date(args.logical_date) if args.logical_date else None
    dag_run = RuntimeDagRun(dag_id=args.dag_id, run_id=args.run_id, logical_date=logical_date, conf={},
                            run_type=args.run_type, data_interval_start=logical_date, data_interval_end=logical_date)
    context = {"dag": dag, "dag_run": dag_run, "run_id": args.run_id, "reason": args.reason,
               "logical_date": logical_date, "state": args.state}
    name = "on_success_callback" if args.state == "success" else "on_failure_callback"
    log.info("running %s of DAG %s for run %s (%s)", name, args.dag_id, args.run_id, args.state)
    run_callbacks(dag, name, context)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossdock.runner.dag_callback")
    parser.add_argument("dag_id")
    parser.add_argument("run_id")
    parser.add_argument("state", choices=("success", "failed"))
    parser.add_argument("--reason", default="")
    parser.add_argument("--subdir")
    parser.add_argument("--logical-date", dest="logical_date")
    parser.add_argument("--run-type", dest="run_type")
    args = parser.parse_args(argv)
    from crossdock.config_secrets import scrub_try_environment

    scrub_try_environment(os.environ)
    path = callback_log_path(args.dag_id, args.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
        try:
            return _run(args)
        except Exception:  # noqa: BLE001 - the DAG file itself failed to load
            traceback.print_exc()
            return 1


if __name__ == "__main__":  # pragma: no cover - the callback process
    sys.exit(main())
