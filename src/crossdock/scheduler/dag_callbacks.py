"""Start a DAG's success or failure callback in a process of its own when a run ends.

The scheduler only starts and reaps these processes (see :mod:`crossdock.runner.dag_callback`);
it never imports the DAG file or calls user code. A process still running at shutdown
is left to finish on its own.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Any

from crossdock.runner.dag_callback import callback_command

log = logging.getLogger("crossdock.scheduler")


class DagCallbacks:
    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def run_ended(self, run: Any) -> None:
        """Start the callback for how ``run`` ended, if its DAG has one."""
        state = run.dag_run.state
        if not (run.dag.has_on_success_callback if state == "success" else run.dag.has_on_failure_callback):
            return
        failed = sorted(ti.task_id for ti in run.tis.values() if ti.state in ("failed", "upstream_failed"))
        reason = "success" if state == "success" else (
            "dagrun_timeout" if run.timed_out else f"task failure: {', '.join(failed) or 'none'}")
        logical_date = run.dag_run.logical_date.isoformat() if run.dag_run.logical_date else None
        command = callback_command(dag_id=run.dag_id, run_id=run.run_id, state=state, reason=reason,
                                  subdir=run.dag.subdir, logical_date=logical_date, run_type=run.dag_run.run_type)
        try:
            self.processes.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL, start_new_session=True))
        except OSError as exc:
            log.error("could not start the %s callback of DAG %s: %s", state, run.dag_id, exc)

    def reap(self) -> None:
        self.processes = [process for process in self.processes if process.poll() is None]
