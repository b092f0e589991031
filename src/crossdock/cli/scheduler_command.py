"""``crossdock scheduler``: the one process that schedules, with the executor inside it."""

from __future__ import annotations

import logging

from crossdock.configuration import conf
from crossdock.database import check_connection, ensure_migrated

log = logging.getLogger("crossdock.scheduler")


def build_scheduler(**kwargs):
    """Validate config, migrate, load the configured executors and return a SchedulerJob."""
    from crossdock.executors.executor_loader import load_executors
    from crossdock.scheduler.scheduler_job import SchedulerJob

    conf.validate()
    check_connection()
    ensure_migrated()
    return SchedulerJob(executors=load_executors(), **kwargs)


def scheduler(args) -> int:
    """Run as the active scheduler or a hot standby; a scheduler that loses the lease (it was
    paused or cut off while a standby took over) becomes a standby again with a new job.

    With ``[metrics] enabled`` the metrics endpoint listens before the first loop step
    (a port taken stops the command there) and follows each new job until exit.
    """
    from crossdock.monitoring.metrics_server import start_scheduler_metrics

    job = build_scheduler()
    metrics = start_scheduler_metrics(job)
    try:
        while True:
            if metrics is not None:
                metrics.watch(job)
            job.run(handle_signals=True, max_loops=args.num_runs)
            if not job.lost_leadership or job.stop_requested:
                return 0
            log.warning("scheduler job %s lost the lease; starting again as a standby", job.job_id)
            job = build_scheduler()
    finally:
        if metrics is not None:
            metrics.stop()
