"""The scheduler's Prometheus instruments: what happened to tasks, and how long the loop takes.

Two kinds of numbers, chosen so that the scheduler loop pays next to nothing for them:

* *events* — a try's outcome, its wait from queued to running, its duration, one loop
  step's duration — are counted where they happen: a state listener on the scheduler's
  task table and a loop listener, each an in-memory counter increment or histogram
  observation (no database query, no lock the loop waits on);
* *levels* — executor slots, queue depth, workers, pods, the autoscaler's decisions —
  are read only when Prometheus scrapes, from objects that hold them already
  (:mod:`crossdock.monitoring.metrics_collector`).

Every :class:`SchedulerMetrics` has a registry of its own, never prometheus-client's
global one, so two schedulers in one process (tests, a standby) never clash.

The scheduler is followed duck-typed (``state_listeners``, ``loop_listeners``,
``executors``, ``recovery``): this package never imports the scheduler.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from crossdock.monitoring.metrics_collector import SchedulerStateCollector
from crossdock.state import TaskInstanceState as S

#: The states that end a try, each counted in ``crossdock_task_instances_finished_total``.
OUTCOME_STATES = frozenset({S.SUCCESS, S.FAILED, S.UP_FOR_RETRY, S.UPSTREAM_FAILED, S.SKIPPED, S.REMOVED})
#: States in which a try is with its executor; leaving one for an outcome means the try ran.
BUSY_STATES = frozenset({S.QUEUED, S.RUNNING})

#: Buckets (seconds) of a scheduler loop step: most are well under a millisecond.
LOOP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Buckets (seconds) of the wait between queued and running: a fork, a worker, a pod.
QUEUED_TO_RUNNING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                             120.0, 300.0, 600.0)
#: Buckets (seconds) of one try's duration: from no-op tasks to day-long ones.
RUN_DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
                        21600.0, 86400.0)


def _seconds_between(earlier: datetime | None, later: datetime | None) -> float | None:
    """``later - earlier`` in seconds; a naive datetime (read back from SQLite) is UTC."""
    if earlier is None or later is None:
        return None
    if earlier.tzinfo is None:
        earlier = earlier.replace(tzinfo=timezone.utc)
    if later.tzinfo is None:
        later = later.replace(tzinfo=timezone.utc)
    return max(0.0, (later - earlier).total_seconds())


class SchedulerMetrics:
    """The instruments of one scheduler process and the collector of its levels.

    Histograms carry no ``dag_id`` label: every label value multiplies a histogram's
    bucket series, and the outcome counter already says which DAG a try belonged to.

    :param registry: where the metrics are registered; default: a new one of its own.
    """

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.finished = Counter(
            "crossdock_task_instances_finished", "Tries that ended, by DAG, queue, executor and state.",
            ["dag_id", "queue", "executor", "state"], registry=self.registry)
        self.queued_to_running = Histogram(
            "crossdock_task_queued_to_running_seconds",
            "Seconds from a try's queued state to its running state (tries the scheduler saw start).",
            ["queue", "executor"], buckets=QUEUED_TO_RUNNING_BUCKETS, registry=self.registry)
        self.run_duration = Histogram(
            "crossdock_task_run_duration_seconds",
            "The duration the scheduler records for each try that its executor ended, by outcome.",
            ["queue", "executor", "state"], buckets=RUN_DURATION_BUCKETS, registry=self.registry)
        self.loop_duration = Histogram(
            "crossdock_scheduler_loop_duration_seconds", "Seconds one scheduler loop step took (no idle wait).",
            buckets=LOOP_BUCKETS, registry=self.registry)
        self.collector = SchedulerStateCollector()
        self.registry.register(self.collector)
        # Label children by value tuple: one dict lookup per transition instead of labels().
        self._finished: dict[tuple[str, str, str, str], Any] = {}
        self._waits: dict[tuple[str, str], Any] = {}
        self._durations: dict[tuple[str, str, str], Any] = {}
        self._job: Any = None

    # -- following a scheduler ---------------------------------------------------------------
    def watch(self, job: Any) -> None:
        """Count ``job``'s transitions and loop steps and read its executors at scrape time.

        A scheduler command that starts over with a new job (it lost the lease) calls this
        again; the previous job is let go and the counters go on.
        """
        if self._job is job:
            return
        self.unwatch()
        job.state_listeners.append(self.task_state_changed)
        job.loop_listeners.append(self.loop_finished)
        self._job = job
        self.collector.job = job

    def unwatch(self) -> None:
        job, self._job = self._job, None
        if job is None:
            return
        for listeners, listener in ((job.state_listeners, self.task_state_changed),
                                    (job.loop_listeners, self.loop_finished)):
            if listener in listeners:
                listeners.remove(listener)
        self.collector.job = None

    # -- the listeners (on the scheduler's thread) --------------------------------------------
    def task_state_changed(self, ti: Any, old: str | None, new: str | None) -> None:
        """Count an outcome, or time a start; anything else costs two comparisons."""
        if new == S.RUNNING:
            waited = _seconds_between(ti.queued_dttm, ti.start_date)
            if waited is not None:
                key = (ti.queue or "", ti.executor or "")
                child = self._waits.get(key)
                if child is None:
                    child = self._waits[key] = self.queued_to_running.labels(*key)
                child.observe(waited)
            return
        if new not in OUTCOME_STATES:
            return
        state = str(new)
        key = (ti.dag_id, ti.queue or "", ti.executor or "", state)
        child = self._finished.get(key)
        if child is None:
            child = self._finished[key] = self.finished.labels(*key)
        child.inc()
        if old in BUSY_STATES and ti.duration is not None:
            duration_key = key[1:]
            timer = self._durations.get(duration_key)
            if timer is None:
                timer = self._durations[duration_key] = self.run_duration.labels(*duration_key)
            timer.observe(ti.duration)

    def loop_finished(self, seconds: float) -> None:
        self.loop_duration.observe(seconds)

    # -- reading -----------------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition format, as ``GET /metrics`` serves it."""
        return generate_latest(self.registry)
