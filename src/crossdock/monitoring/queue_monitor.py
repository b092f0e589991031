"""The one place that reads every queue's numbers; everything else reads its cache.

A refresh asks the metadata database (one grouped query), the broker (message counts),
the Celery workers (inspect replies) and the Kubernetes API (pods by phase, idle warm
pods by profile) — each only if a configured executor uses it — and builds one
:class:`QueueStatus` per queue. It runs on its own thread every ``[worker_queues]
interval`` seconds; :meth:`snapshot` returns the last result without waiting, so the
scheduler loop, a metrics scrape or the autoscaler never waits on a slow broker. A source that fails leaves its fields ``None``
and says why in ``errors``; the others are still reported.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from crossdock.configuration import conf
from crossdock.monitoring.queue_status import QueueStatus, WarmPodCount, WorkerInfo, desired_workers
from crossdock.monitoring.scheduler_counts import QueueCounts, queues_dags_use, read_queue_counts
from crossdock.monitoring.worker_queues import WorkerQueues

log = logging.getLogger("crossdock.monitoring")

CELERY = "CeleryExecutor"
KUBERNETES = "KubernetesExecutor"
HYBRID = "CeleryKubernetesExecutor"


def configured_executor_classes() -> set[str]:
    from crossdock.executor_names import parse_executor_names

    return {name.class_name for name in parse_executor_names()}


def executor_for_queue(queue: str) -> str:
    """The executor class name a task of ``queue`` is routed to (no executor is built)."""
    from crossdock.executor_names import parse_executor_names
    from crossdock.executors.routing import configured_rules

    names = parse_executor_names()
    by_alias = {name.alias: name.class_name for name in names}
    target = next((rule.executor for rule in configured_rules() if rule.matches(queue)), None)
    class_name = by_alias.get(target, target) if target else names[0].class_name
    if class_name == HYBRID:
        kubernetes_queue = conf.getstr("celery_kubernetes_executor", "kubernetes_queue")
        return KUBERNETES if queue == kubernetes_queue else CELERY
    return class_name


class QueueMonitor:
    """Per-queue numbers, refreshed in the background and read from a cache.

    :param interval: seconds between background refreshes (default ``[worker_queues] interval``).
    :param celery_app: the Celery app to inspect; default: crossdock's, built on first need.
    :param read_workers: also ask the Celery workers (one inspect timeout per refresh).
    :param worker_queues: the queues' bounds (default: read from ``[worker_queues]``).
    """

    def __init__(self, *, interval: float | None = None, celery_app: Any = None,
                 read_workers: bool = True, worker_queues: WorkerQueues | None = None) -> None:
        self.interval = conf.getfloat("worker_queues", "interval") if interval is None else interval
        self.worker_queues = worker_queues or WorkerQueues.from_config()
        self.read_workers = read_workers
        self._celery_app = celery_app
        self._lock = threading.Lock()
        self._snapshot: list[QueueStatus] = []
        self._taken_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[list[QueueStatus]], None]] = []
        self.refresh_seconds: float | None = None

    # -- reading ----------------------------------------------------------------------------
    def snapshot(self) -> list[QueueStatus]:
        """The last refresh's statuses (empty before the first); never waits on a source."""
        with self._lock:
            return list(self._snapshot)

    def status(self, queue: str) -> QueueStatus | None:
        return next((s for s in self.snapshot() if s.queue == queue), None)

    @property
    def age_seconds(self) -> float | None:
        """Seconds since the last refresh finished; None before the first."""
        return None if self._taken_at is None else time.monotonic() - self._taken_at

    def on_refresh(self, listener: Callable[[list[QueueStatus]], None]) -> None:
        """Call ``listener(statuses)`` after every refresh (on the monitor's thread)."""
        self._listeners.append(listener)

    # -- refreshing -------------------------------------------------------------------------
    def refresh(self) -> list[QueueStatus]:
        """Read every source now and replace the cache; returns the new statuses."""
        started = time.perf_counter()
        counts = read_queue_counts()
        dag_queues = queues_dags_use()
        queues = set(counts) | set(self.worker_queues.names()) | dag_queues
        queues.add(conf.getstr("core", "default_queue"))
        if HYBRID in configured_executor_classes():
            queues.add(conf.getstr("celery_kubernetes_executor", "kubernetes_queue"))
        executors = {queue: executor_for_queue(queue) for queue in queues}
        celery_queues = sorted(q for q, name in executors.items() if name == CELERY)
        broker, workers, broker_error, workers_error = self._read_celery(celery_queues)
        if workers:
            for queue in workers:
                if queue not in executors:
                    executors[queue] = executor_for_queue(queue)
                    if executors[queue] == CELERY:
                        celery_queues.append(queue)
        pods, pods_error = self._read_pods(executors)
        now = datetime.now(timezone.utc)
        statuses = []
        for queue in sorted(executors):
            status = self._status(queue, executors[queue], counts.get(queue, QueueCounts()), now)
            status.used_by_dags = queue in dag_queues or queue in counts
            if executors[queue] == CELERY:
                self._add_celery(status, broker, workers, broker_error, workers_error)
            elif executors[queue] == KUBERNETES:
                self._add_pods(status, pods, pods_error)
            statuses.append(status)
        with self._lock:
            self._snapshot = statuses
            self._taken_at = time.monotonic()
        self.refresh_seconds = time.perf_counter() - started
        for listener in self._listeners:
            try:
                listener(statuses)
            except Exception:  # noqa: BLE001 - a listener must not stop the monitor
                log.exception("queue monitor listener failed")
        return statuses

    def _status(self, queue: str, executor: str, counts: QueueCounts, now: datetime) -> QueueStatus:
        status = QueueStatus(queue=queue, executor=executor, scheduled=counts.scheduled,
                             queued=counts.queued, running=counts.running)
        if counts.oldest_queued_at is not None:
            oldest = counts.oldest_queued_at
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=timezone.utc)
            status.oldest_wait_seconds = max(0.0, (now - oldest).total_seconds())
        if executor == CELERY:
            spec = self.worker_queues.spec_for(queue)
            status.configured = spec.configured
            status.min_workers, status.max_workers = spec.min_workers, spec.max_workers
            status.max_tasks_per_worker = spec.max_tasks_per_worker
            status.desired_workers, status.desired_reason = desired_workers(
                spec, queued=status.waiting, running=status.running)
            if not spec.configured:
                status.desired_reason += " (queue not in [worker_queues] queues: defaults)"
        return status

    def _celery_app_or_none(self) -> Any:
        if self._celery_app is None:
            from crossdock.executors.celery_app import get_celery_app

            self._celery_app = get_celery_app()
        return self._celery_app

    def _read_celery(self, queues: list[str]):
        if not queues:
            return {}, {}, None, None
        from crossdock.monitoring.broker_depth import BrokerUnreachable, broker_depths
        from crossdock.monitoring.celery_workers import workers_by_queue

        app = self._celery_app_or_none()
        try:
            broker = broker_depths(app, queues)
        except BrokerUnreachable as exc:
            return {}, {}, str(exc), "workers not asked: the broker is unreachable"
        if not self.read_workers:
            return broker, {}, None, None
        try:
            return broker, workers_by_queue(app), None, None
        except Exception as exc:  # noqa: BLE001 - report, keep the other numbers
            return broker, {}, None, f"workers did not answer: {exc}"

    @staticmethod
    def _add_celery(status: QueueStatus, broker: dict[str, int], workers: dict[str, list[WorkerInfo]],
                    broker_error: str | None, workers_error: str | None) -> None:
        if broker_error:
            status.errors.append(broker_error)
        else:
            status.broker_messages = broker.get(status.queue, 0)
        if workers_error:
            status.errors.append(workers_error)
            return
        hosts = workers.get(status.queue, [])
        status.worker_hosts = hosts
        status.workers = len(hosts)
        status.free_slots = sum(w.free_slots for w in hosts)

    @staticmethod
    def _read_pods(executors: dict[str, str]):
        if KUBERNETES not in executors.values():
            return None, None
        from crossdock.monitoring.pod_counts import read_pod_counts

        try:
            return read_pod_counts(), None
        except Exception as exc:  # noqa: BLE001 - report, keep the scheduler-side numbers
            return None, f"pods not listed: {exc}"

    @staticmethod
    def _add_pods(status: QueueStatus, pods, pods_error: str | None) -> None:
        if pods_error:
            status.errors.append(pods_error)
            return
        if pods is not None:
            status.pods_pending = pods.phases.get("Pending", 0)
            status.pods_running = pods.phases.get("Running", 0)
            status.warm_pods = [WarmPodCount(profile=profile, pending=phases.get("Pending", 0),
                                             running=phases.get("Running", 0))
                                for profile, phases in sorted(pods.warm.items())]

    # -- the background thread -------------------------------------------------------------
    def start(self) -> "QueueMonitor":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="crossdock-queue-monitor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a failed refresh keeps the last snapshot
                log.exception("queue monitor refresh failed")
            self._stop.wait(self.interval)
