"""The levels ``/metrics`` shows, read at scrape time from what already holds them.

Nothing here asks a database, a broker or the Kubernetes API: executor slots are the
sizes of the executors' own collections, queue depth, workers and pods are the queue
monitor's cached snapshot (:class:`~crossdock.monitoring.queue_monitor.QueueMonitor`
refreshes it on its own thread), the autoscaler's numbers are its last decisions. A
scrape therefore never waits on a slow service, and the scheduler loop never waits on a
scrape. A source that is not there (no monitor, no autoscaler) is left out; one that
fails is logged and left out, so one broken source never empties the whole page.

The scheduler, the monitor and the autoscaler are read duck-typed (attributes only).
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("crossdock.monitoring")

#: The scheduler-side states of ``crossdock_queue_tasks``.
QUEUE_TASK_STATES = ("scheduled", "queued", "running")


def leaf_executors(executors: Iterable[Any]) -> list[tuple[str, Any]]:
    """``(name recorded on task instances, executor)`` of each executor that runs tries itself.

    A hybrid holds nothing of its own; its children are listed under their names.
    """
    leaves = []
    for executor in executors:
        children = getattr(executor, "child_executors", None)
        if children:
            leaves.extend(children.items())
        else:
            leaves.append((executor.name or type(executor).__name__, executor))
    return leaves


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels or [])


class SchedulerStateCollector(Collector):
    """A prometheus-client collector over a scheduler job, a queue monitor and an autoscaler.

    The three attributes may be set or replaced at any time; ``None`` leaves that part out.
    """

    def __init__(self, *, job: Any = None, monitor: Any = None, autoscaler: Any = None) -> None:
        self.job = job
        self.monitor = monitor
        self.autoscaler = autoscaler

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        for part in (self._scheduler, self._queues, self._autoscaler):
            try:
                yield from part()
            except Exception:  # noqa: BLE001 - one source must not break the whole scrape
                log.exception("metrics: reading %s failed", part.__name__.strip("_"))

    # -- the scheduler and its executors ------------------------------------------------------
    def _scheduler(self):
        job = self.job
        if job is None:
            return
        leaves = leaf_executors(job.executors)
        slots = _gauge("crossdock_executor_slots", "Task slots of each executor: open, queued (waiting for "
                       "a slot of the executor) and running (handed to a worker, pod or process).",
                       ["executor", "kind"])
        failures = CounterMetricFamily("crossdock_publish_failures", "Attempts to hand a try to its engine "
                                       "that failed (a broker publish, a pod creation).", labels=["executor"])
        for name, executor in leaves:
            queued, running = len(executor.queued_tasks), len(executor.running)
            open_slots = executor.slots_available
            slots.add_metric([name, "open"], math.inf if open_slots >= sys.maxsize else float(open_slots))
            slots.add_metric([name, "queued"], queued)
            slots.add_metric([name, "running"], running)
            failures.add_metric([name], getattr(executor, "publish_failures", 0))
        yield slots
        yield failures
        recovery = getattr(job, "recovery", None)
        if recovery is not None:
            names = [name for name, _executor in leaves]
            yield self._by_executor("crossdock_adopted_task_instances", "Tries of an earlier scheduler this "
                                    "one adopted from their executor.", recovery.adopted, names)
            yield self._by_executor("crossdock_reset_task_instances", "Tries of an earlier scheduler their "
                                    "executor could not adopt, started over (not charged).", recovery.reset, names)
        yield from (
            _single(_gauge("crossdock_scheduler_dag_runs_active", "DAG runs the scheduler is working on."),
                    len(job.runs)),
            _single(_gauge("crossdock_scheduler_task_instances_in_flight",
                           "Task instances queued or running, as the scheduler's slot limits count them."),
                    job.task_instances_in_flight()),
            _single(CounterMetricFamily("crossdock_scheduler_loops", "Scheduler loop steps so far."),
                    job.loop_count),
        )

    @staticmethod
    def _by_executor(name: str, documentation: str, counts: Any, names: list[str]) -> CounterMetricFamily:
        family = CounterMetricFamily(name, documentation, labels=["executor"])
        counts = dict(counts)
        for executor in dict.fromkeys([*names, *counts]):
            family.add_metric([executor], counts.get(executor, 0))
        return family

    # -- the queue monitor's snapshot ------------------------------------------------------------
    def _queues(self):
        monitor = self.monitor
        if monitor is None:
            return
        statuses = monitor.snapshot()
        tasks = _gauge("crossdock_queue_tasks", "Task instances of each queue by scheduler-side state "
                       "(scheduled: ready for a slot; queued: with the executor, not started).", ["queue", "state"])
        broker = _gauge("crossdock_queue_broker_messages", "Messages waiting in the broker for each queue.",
                        ["queue"])
        workers = _gauge("crossdock_queue_workers", "Celery workers consuming each queue.", ["queue"])
        free = _gauge("crossdock_queue_free_slots", "Free task slots of the workers consuming each queue.",
                      ["queue"])
        desired = _gauge("crossdock_queue_desired_workers", "Workers each queue calls for: "
                         "ceil((queued + running) / max_tasks_per_worker) within min and max.", ["queue"])
        oldest = _gauge("crossdock_queue_oldest_wait_seconds", "Seconds the oldest waiting task instance "
                        "of each queue has waited.", ["queue"])
        errors = _gauge("crossdock_queue_read_errors", "Sources of each queue's numbers that could not be "
                        "read at the last refresh (broker, workers, pods).", ["queue"])
        pods = _gauge("crossdock_pods", "crossdock's worker pods by phase (idle warm pods: crossdock_warm_pods).",
                      ["phase"])
        warm = _gauge("crossdock_warm_pods", "Idle (unassigned) warm pods by profile and phase; an assigned "
                      "one is counted in crossdock_pods as its try's pod.", ["profile", "phase"])
        pods_seen = False
        for status in statuses:
            queue = status.queue
            for state in QUEUE_TASK_STATES:
                tasks.add_metric([queue, state], getattr(status, state))
            for family, value in ((broker, status.broker_messages), (workers, status.workers),
                                  (free, status.free_slots), (desired, status.desired_workers),
                                  (oldest, status.oldest_wait_seconds)):
                if value is not None:  # None: could not be read, which is not zero
                    family.add_metric([queue], value)
            errors.add_metric([queue], len(status.errors))
            if not pods_seen and status.pods_pending is not None:
                pods_seen = True  # every crossdock pod is counted once, whichever queue shows it
                pods.add_metric(["Pending"], status.pods_pending)
                pods.add_metric(["Running"], status.pods_running or 0)
                for count in status.warm_pods:
                    warm.add_metric([count.profile, "Pending"], count.pending)
                    warm.add_metric([count.profile, "Running"], count.running)
        yield from (tasks, broker, workers, free, desired, oldest, errors, pods)
        if warm.samples:  # left out unless warm pods are there: no new series for those who never use them
            yield warm
        age = monitor.age_seconds
        if age is not None:
            yield _single(_gauge("crossdock_queue_monitor_age_seconds",
                                 "Seconds since the queue numbers were last refreshed."), age)
        refresh = getattr(monitor, "refresh_seconds", None)
        if refresh is not None:
            yield _single(_gauge("crossdock_queue_monitor_refresh_seconds",
                                 "Seconds the last refresh of the queue numbers took."), refresh)

    # -- the autoscaler's last decisions -----------------------------------------------------------
    def _autoscaler(self):
        autoscaler = self.autoscaler
        if autoscaler is None:
            return
        driver = str(getattr(getattr(autoscaler, "pool", None), "driver", "") or "")
        desired = _gauge("crossdock_autoscaler_desired_workers", "Workers the autoscaler's last decision "
                         "asked for, per queue.", ["queue", "driver"])
        actual = _gauge("crossdock_autoscaler_actual_workers", "Workers the queue had at the autoscaler's "
                        "last decision (draining ones not counted).", ["queue", "driver"])
        for queue, decision in sorted(dict(autoscaler.last_decisions).items()):
            desired.add_metric([queue, driver], decision.desired)
            actual.add_metric([queue, driver], decision.actual)
        yield desired
        yield actual


def _single(family, value: float):
    family.add_metric([], value)
    return family
