"""The worker-queue autoscaler: each Celery queue gets the workers its load calls for.

After every queue-monitor refresh (``[worker_queues] interval``), for each Celery queue
(those the config lists, those DAGs use, those workers consume): the number the formula
gives (``ceil((queued + running) / max_tasks_per_worker)`` between ``min_workers`` and
``max_workers``, see :func:`~crossdock.monitoring.queue_status.desired_workers`) against
what the pool (its *driver*: local processes, a Kubernetes Deployment) has now.

- Up at once: a task waiting on a queue with no worker starts one (the formula gives 1).
- Down only once ``[worker_queues] cooldown`` has passed since the queue's last change
  (the autoscaler's start counts as one), so a queue whose load wobbles does not flap;
  and always drain-first: the driver retires idle workers before busy ones and lets a
  retired worker finish what it runs.
- One INFO line per change, saying why::

      autoscaler: queue burst 0 -> 4 workers (ceil((300 queued + 0 running) / 4 per worker) = 75, capped at max_workers 4) [local]

The decision of one step is :meth:`Autoscaler.decide`, callable on its own (a test, a
benchmark); :attr:`Autoscaler.last_decisions` keeps each queue's latest for the metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from crossdock.configuration import conf
from crossdock.monitoring.queue_monitor import CELERY
from crossdock.monitoring.queue_status import QueueStatus, desired_workers
from crossdock.monitoring.worker_pool import ScalingDecision, WorkerPool
from crossdock.monitoring.worker_queues import WorkerQueues

log = logging.getLogger("crossdock.monitoring.autoscaler")


class Autoscaler:
    """Sizes each Celery queue's workers from the queue monitor's numbers.

    :param monitor: the :class:`~crossdock.monitoring.queue_monitor.QueueMonitor` whose
        refreshes drive the decisions (:meth:`start` subscribes to them).
    :param pool: the :class:`~crossdock.monitoring.worker_pool.WorkerPool` (driver) that
        starts and retires workers.
    :param worker_queues: each queue's bounds (default: the monitor's).
    :param interval: seconds between decisions; when given, the monitor refreshes at this
        interval (default: the monitor's, ``[worker_queues] interval``).
    :param cooldown: seconds after a queue's last change before it may shrink (default
        ``[worker_queues] cooldown``); growing never waits.
    """

    def __init__(self, *, monitor: Any, pool: WorkerPool, worker_queues: WorkerQueues | None = None,
                 interval: float | None = None, cooldown: float | None = None) -> None:
        self.monitor = monitor
        self.pool = pool
        self.worker_queues = worker_queues or monitor.worker_queues
        if interval is not None:
            monitor.interval = interval
        self.interval = monitor.interval
        self.cooldown = conf.getfloat("worker_queues", "cooldown") if cooldown is None else cooldown
        #: queue → its latest decision (read by the metrics collector).
        self.last_decisions: dict[str, ScalingDecision] = {}
        self._last_change: dict[str, float] = {}
        self._last_error: dict[str, str] = {}
        self._started_at = time.monotonic()
        self._lock = threading.Lock()
        self._running = False
        self._subscribed = False

    # -- one step --------------------------------------------------------------------------
    def decide(self, statuses: list[QueueStatus]) -> list[ScalingDecision]:
        """Advance the pool's drains, then decide (and act) for every Celery queue; the decisions."""
        with self._lock:
            try:
                self.pool.tick()
            except Exception:  # noqa: BLE001 - a failed tick must not stop the decisions
                log.exception("autoscaler: the %s driver's tick failed", self.pool.driver)
            decisions = [self._decide_queue(status) for status in statuses if status.executor == CELERY]
            for decision in decisions:
                self.last_decisions[decision.queue] = decision
            return decisions

    def _decide_queue(self, status: QueueStatus) -> ScalingDecision:
        queue = status.queue
        spec = self.worker_queues.spec_for(queue)
        desired, reason = desired_workers(spec, queued=status.waiting, running=status.running)
        previous = self.last_decisions.get(queue)
        actual = after = previous.actual if previous else 0  # if the driver cannot even say
        action, retired = "none", []
        try:
            actual = after = self.pool.actual_workers(queue)
            if desired > actual:
                self.pool.scale_up(queue, desired - actual, status)
                action = "up"
            elif desired < actual:
                waited = time.monotonic() - self._last_change.get(queue, self._started_at)
                if waited < self.cooldown:
                    action = "cooldown"
                    reason += f"; scale-down waits for the cool-down ({self.cooldown - waited:.0f} s left)"
                else:
                    retired = self.pool.scale_down(queue, actual - desired, status)
                    action = "down" if retired else "none"
                    if not retired:
                        reason += "; no worker can be retired yet"
            if action in ("up", "down"):
                after = self.pool.actual_workers(queue)
        except Exception as exc:  # noqa: BLE001 - report, try again at the next step
            action, reason = "error", f"{reason}; the {self.pool.driver} driver failed: {exc}"
            if self._last_error.get(queue) != str(exc):
                log.warning("autoscaler: queue %s: %s", queue, reason)
            self._last_error[queue] = str(exc)
        else:
            self._last_error.pop(queue, None)
        if action in ("up", "down"):
            self._last_change[queue] = time.monotonic()
            retiring = f" retiring {', '.join(retired)}" if retired else ""
            log.info("autoscaler: queue %s %d -> %d workers (%s) [%s]%s", queue, actual, after, reason,
                     self.pool.driver, retiring)
        return ScalingDecision(queue=queue, desired=desired, actual=after, action=action, reason=reason,
                               at=time.time(), draining=self._draining(queue))

    def _draining(self, queue: str) -> list[str]:
        try:
            return list(self.pool.draining_workers(queue))
        except Exception:  # noqa: BLE001 - only informative
            return []

    # -- following the monitor -------------------------------------------------------------
    def start(self) -> "Autoscaler":
        """Decide after every monitor refresh from now on; starts the monitor's thread if needed."""
        self._running = True
        if not self._subscribed:
            self.monitor.on_refresh(self._on_refresh)
            self._subscribed = True
        self.monitor.start()
        return self

    def stop(self) -> None:
        """Stop deciding and stop the monitor. The pool keeps its workers: close it to stop them."""
        self._running = False
        self.monitor.stop()

    def run_forever(self, stop_event: threading.Event) -> None:
        """Decide after every refresh until ``stop_event`` is set (``crossdock celery autoscaler``)."""
        self.start()
        try:
            stop_event.wait()
        finally:
            self.stop()

    def _on_refresh(self, statuses: list[QueueStatus]) -> None:
        if self._running:
            self.decide(statuses)
