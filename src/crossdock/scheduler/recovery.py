"""Tries that went missing: stuck in queued past the timeout, or left by an earlier scheduler.

Neither costs the task a retry: a try that never started, or whose scheduler died, did
not fail (design principle 10). A stuck try is revoked and requeued up to
``num_stuck_in_queued_retries`` times, then failed with the reason; an orphaned try is
offered to its executor for adoption and started over if the executor cannot take it.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from crossdock.executors.base_executor import BaseExecutor
from crossdock.executors.routing import ExecutorRouter
from crossdock.models import TaskInstance
from crossdock.scheduler.active_run import ActiveRun
from crossdock.scheduler.task_table import TaskTable
from crossdock.state import TaskInstanceState as S

log = logging.getLogger("crossdock.scheduler")


class Recovery:
    def __init__(self, table: TaskTable, router: ExecutorRouter, *, task_queued_timeout: float,
                 stuck_retries: int):
        self.table = table
        self.router = router
        self.task_queued_timeout = task_queued_timeout
        self.stuck_retries = stuck_retries
        #: Orphaned tries adopted and reset (started over) so far, by executor name (the metrics).
        self.adopted: Counter[str] = Counter()
        self.reset: Counter[str] = Counter()

    def fail_stuck_queued(self, now: datetime) -> int:
        table = self.table
        if self.task_queued_timeout <= 0 or not table.queued_ids:
            return 0
        limit = now - timedelta(seconds=self.task_queued_timeout)
        changed = 0
        for ti_id in list(table.queued_ids):
            run, ti = table.by_id(ti_id)
            if ti.state != S.QUEUED or ti.queued_dttm is None or ti.queued_dttm > limit:
                continue
            revoke(self.router.owner_of(ti), ti)
            waited = self.task_queued_timeout
            if ti.stuck_in_queued_count < self.stuck_retries:
                log.warning("task %s stuck in queued for %.0f s; requeueing it", ti.key, waited)
                # The lost try does not count against the task's own retries.
                table.reschedule(run, ti, stuck_in_queued_count=ti.stuck_in_queued_count + 1,
                                 max_tries=ti.max_tries + 1)
            else:
                table.set_state(run, ti, S.FAILED, end_date=now, start_date=ti.queued_dttm,
                                duration=(now - ti.queued_dttm).total_seconds(),
                                failure_reason=(f"stuck in queued for more than {waited:.0f} s "
                                                f"(task_queued_timeout), requeued {ti.stuck_in_queued_count} times"))
            changed += 1
        return changed

    def adopt_or_reset_orphans(self, job_id: int | None) -> int:
        """Tries queued or running for an earlier scheduler: adopt them or start them over.

        Only the lease holder queues tries, so once this job holds the lease every try of
        another job belongs to a scheduler that can no longer write (dead, or paused and
        fenced out), whatever its heartbeat says: there is nothing to wait for.
        """
        orphans: list[tuple[ActiveRun, TaskInstance]] = []
        for run, ti in self.table.in_flight():
            if ti.queued_by_job_id != job_id:
                ti.dag_fileloc = run.dag.subdir  # lets an executor rebuild the try's command
                orphans.append((run, ti))
        if not orphans:
            return 0
        by_executor: dict[int, tuple[BaseExecutor, list[tuple[ActiveRun, TaskInstance]]]] = {}
        for run, ti in orphans:
            executor = self.router.owner_of(ti)
            by_executor.setdefault(id(executor), (executor, []))[1].append((run, ti))
        for executor, items in by_executor.values():
            tis = [ti for _run, ti in items]
            try:
                not_adopted = {id(ti) for ti in executor.try_adopt_task_instances(tis)}
            except Exception:  # noqa: BLE001
                log.exception("adoption by %s failed; resetting its tasks", executor)
                not_adopted = {id(ti) for ti in tis}
            for run, ti in items:
                if id(ti) in not_adopted:
                    log.warning("resetting orphaned task %s (its scheduler job %s is gone)", ti.key,
                                ti.queued_by_job_id)
                    # The lost try is not charged to the task's own retries.
                    self.reset[ti.executor or ""] += 1
                    self.table.reschedule(run, ti, max_tries=ti.max_tries + 1, external_executor_id=None)
                else:
                    log.info("adopted %s from scheduler job %s", ti.key, ti.queued_by_job_id)
                    self.adopted[ti.executor or ""] += 1
                    ti.queued_by_job_id = job_id
                    self.table.mark_dirty(ti)
        return len(orphans)


def revoke(executor: BaseExecutor, ti: TaskInstance) -> None:
    """Stop a try wherever it is and make the executor forget it (its slot is free again)."""
    try:
        executor.revoke_task(ti=ti)
    except NotImplementedError:
        try:
            executor.cleanup_stuck_queued_tasks([ti])
        except NotImplementedError:
            pass
    except Exception:  # noqa: BLE001
        log.exception("could not revoke %s", ti.key)
    executor.queued_tasks.pop(ti.key, None)
    executor.running.discard(ti.key)
