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
    paused or cut off while a standby took over) becomes a standby again with a new job."""
    while True:
        job = build_scheduler()
        job.run(handle_signals=True, max_loops=args.num_runs)
        if not job.lost_leadership or job.stop_requested:
            return 0
        log.warning("scheduler job %s lost the lease; starting again as a standby", job.job_id)
