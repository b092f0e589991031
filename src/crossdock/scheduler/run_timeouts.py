"""``dagrun_timeout``: a run still going past its DAG's limit fails, as in Airflow.

Its unfinished task instances are skipped (Airflow's choice: they did not fail, the run
ran out of time), and the tries of those still queued or running are stopped through
their executor, so nothing goes on working for a run that is over.
"""

from __future__ import annotations

import logging
from datetime import datetime

from crossdock.executors.routing import ExecutorRouter
from crossdock.scheduler.recovery import revoke
from crossdock.scheduler.task_table import BUSY_STATES, TaskTable
from crossdock.state import FINISHED_STATES
from crossdock.state import TaskInstanceState as S

log = logging.getLogger("crossdock.scheduler")


def time_out_runs(table: TaskTable, router: ExecutorRouter, now: datetime) -> int:
    """Fail every active run past its ``dagrun_timeout``; returns how many task instances changed."""
    changed = 0
    for run in list(table.runs.values()):
        limit = getattr(run.dag, "dagrun_timeout", None)
        started = run.dag_run.start_date
        if not limit or started is None or (now - started).total_seconds() <= limit:
            continue
        reason = f"the DAG run exceeded its dagrun_timeout of {limit:g}s"
        log.warning("run %s of %s: %s; skipping its unfinished tasks", run.run_id, run.dag_id, reason)
        run.timed_out = True
        for ti in list(run.tis.values()):
            if ti.state in FINISHED_STATES:
                continue
            if ti.state in BUSY_STATES:
                executor = router.owner_of(ti)
                if executor is not None:
                    revoke(executor, ti)
            table.set_state(run, ti, S.SKIPPED, end_date=now, failure_reason=reason)
            changed += 1
    return changed
