"""What an executor reports, applied to the task table: running, success, retry or failure.

Only the try the table holds counts: an event for an earlier try (a late report of a
try that was already given up on) is ignored, so a try is never finished twice. A try
lost with its worker or node is run again without spending a retry, as a try stuck in
queued is (design principle 10); a task that keeps killing its workers is charged after
``num_stuck_in_queued_retries`` such losses, counted while this scheduler runs.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from crossdock.dag.exceptions import NO_RETRY_MARK
from crossdock.executors.task_event import TaskEvent
from crossdock.models.base import utcnow
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.try_values import split_outcome
from crossdock.scheduler.active_run import ActiveRun
from crossdock.scheduler.task_table import TaskTable
from crossdock.state import TaskInstanceState as S

log = logging.getLogger("crossdock.scheduler")


class EventApplier:
    def __init__(self, table: TaskTable, *, uncharged_losses: int):
        self.table = table
        self.uncharged_losses = uncharged_losses
        #: Losses not charged to a task's retries, by task instance id.
        self._losses: dict[int, int] = {}

    def apply(self, key: TaskInstanceKey, event: TaskEvent) -> int:
        """Apply one event; returns 1 when the task's state changed."""
        table = self.table
        state = event.state
        entry = table.by_primary(key.primary)
        if entry is None:
            log.debug("event %s for %s which is not in an active run; ignored", state, key)
            return 0
        run, ti = entry
        if key.try_number != ti.try_number:
            log.info("ignoring %s for try %s of %s: the current try is %s", state, key.try_number,
                     key.primary, ti.try_number)
            return 0
        now = utcnow()
        if state == S.QUEUED:
            if event.external_id and ti.external_executor_id != event.external_id:
                ti.external_executor_id = event.external_id
                table.mark_dirty(ti)
            return 0
        if state == S.RUNNING:
            if ti.state != S.QUEUED:
                return 0
            table.set_state(run, ti, S.RUNNING, start_date=now, hostname=event.hostname or ti.hostname,
                            pid=event.pid)
            return 1
        if ti.state not in (S.QUEUED, S.RUNNING):
            log.warning("ignoring %s for %s in state %s", state, key, ti.state)
            return 0
        start = ti.start_date or ti.queued_dttm or now
        duration = max(0.0, (now - start).total_seconds())
        if state == S.SUCCESS:
            values, outcome = split_outcome(event.result)
            if values:
                run.values.store((ti.task_id, ti.map_index), values)
                table.values_changed(run)
            where = {"hostname": ti.hostname or event.hostname, "pid": ti.pid or event.pid}
            slot = (ti.task_id, ti.map_index)
            if outcome.get("state") == S.UP_FOR_RESCHEDULE:  # a sensor's slot is free until its next poke
                due = datetime.fromisoformat(outcome["reschedule_at"])
                sensor = run.sensors.setdefault(slot, {"sensor_first_poke": outcome.get("first_poke") or "",
                                                       "sensor_pokes": "0"})
                sensor["sensor_pokes"] = str(int(sensor["sensor_pokes"]) + 1)
                table.set_state(run, ti, S.UP_FOR_RESCHEDULE, start_date=start, end_date=now, duration=duration,
                                next_retry_at=due, max_tries=ti.max_tries + 1, **where)
                table.push_retry(ti, due)
                return 1
            run.sensors.pop(slot, None)
            if outcome.get("state") == S.SKIPPED:  # the task skipped itself (AirflowSkipException)
                table.set_state(run, ti, S.SKIPPED, start_date=start, end_date=now, duration=duration,
                                failure_reason=outcome.get("reason"), **where)
                return 1
            table.set_state(run, ti, S.SUCCESS, start_date=start, end_date=now, duration=duration, **where)
            skip_unchosen(table, run, ti.task_id, outcome, now)
            return 1
        reason = event.reason or f"task failed ({state})"
        run.sensors.pop((ti.task_id, ti.map_index), None)
        if NO_RETRY_MARK in reason:  # AirflowFailException: failed now, its retries unspent
            table.set_state(run, ti, S.FAILED, start_date=start, end_date=now, duration=duration,
                            failure_reason=reason)
            return 1
        losses = self._losses.get(ti.id, 0)
        if event.infrastructure_loss and losses < self.uncharged_losses:
            self._losses[ti.id] = losses + 1
            log.warning("try %s of %s was lost with its worker (%s); running it again, not charged to "
                        "its retries", ti.try_number, key.primary, reason)
            table.reschedule(run, ti, start_date=start, end_date=now, duration=duration,
                             failure_reason=reason, max_tries=ti.max_tries + 1)
            return 1
        if ti.try_number <= ti.max_tries:
            task = run.dag.tasks.get(ti.task_id)
            delay = task.retry_delay_for(ti.try_number) if task else 0.0
            due = now + timedelta(seconds=delay)
            table.set_state(run, ti, S.UP_FOR_RETRY, start_date=start, end_date=now, duration=duration,
                            failure_reason=reason, next_retry_at=due)
            table.push_retry(ti, due)
        else:
            table.set_state(run, ti, S.FAILED, start_date=start, end_date=now, duration=duration,
                            failure_reason=reason)
        return 1


def skip_unchosen(table: TaskTable, run: ActiveRun, task_id: str, outcome: dict, now) -> None:
    """Skip what a branch did not choose, or everything after a short-circuit, as Airflow's
    SkipMixin does: a branch's other direct downstream tasks, except those that are also
    downstream of a chosen one (the join after an empty branch still runs)."""
    for skipped_id in sorted(unchosen_task_ids(run.dag, task_id, outcome)):
        for other in list(run.instances(skipped_id)):
            if other.state is None:
                table.set_state(run, other, S.SKIPPED, start_date=now, end_date=now, duration=0.0)


def unchosen_task_ids(dag, task_id: str, outcome: dict) -> set[str]:
    """The tasks a successful try's ``outcome`` skips: everything downstream of a
    short-circuit; a branch's direct downstream tasks that it did not choose and that are
    not downstream of one it chose. Empty for a plain success. Reads only the DAG."""
    if outcome.get("skip_descendants"):
        return descendants(dag, [task_id])
    if "follow" not in outcome:
        return set()
    chosen = set(outcome.get("follow") or ())
    task = dag.tasks.get(task_id)
    downstream = task.downstream_task_ids if task is not None else frozenset()
    return set(downstream) - chosen - descendants(dag, chosen)


def descendants(dag, task_ids) -> set[str]:
    """Every task downstream of ``task_ids``, direct or not."""
    found: set[str] = set()
    pending = list(task_ids)
    while pending:
        task = dag.tasks.get(pending.pop())
        for child in task.downstream_task_ids if task is not None else ():
            if child not in found:
                found.add(child)
                pending.append(child)
    return found
