"""The helper processes an executor needs on one machine (Celery workers, local pod runtime).

``crossdock standalone`` and ``crossdock demo`` start them; a production deployment
starts workers with ``crossdock celery worker`` and points at a real cluster instead.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager

log = logging.getLogger("crossdock.services")


def configured_executor_classes() -> set[str]:
    """Class names of the configured executors and of a hybrid's children (nothing imported)."""
    from crossdock.executor_names import CHILD_EXECUTOR_NAMES, parse_executor_names

    names: set[str] = set()
    for name in parse_executor_names():
        names.add(name.class_name)
        names.update(CHILD_EXECUTOR_NAMES.get(name.class_name, ()))
    return names


class EmbeddedServices(AbstractContextManager):
    """Starts what the given executors need; stops it all on exit.

    With ``autoscale`` the Celery side is a queue monitor, an autoscaler and its local
    driver (:attr:`monitor`, :attr:`autoscaler`, for the metrics endpoint); without, one
    fixed worker consuming every queue.
    """

    def __init__(self) -> None:
        self._stoppers: list[tuple[str, object]] = []
        self._descriptions: list[str] = []
        self.monitor = None
        self.autoscaler = None

    @classmethod
    def for_configured_executors(cls, *, autoscale: bool = False) -> "EmbeddedServices":
        """Start them before the executors are built: the pod runtime changes their settings.

        :param autoscale: scale local Celery workers per queue instead of starting one fixed worker.
        """
        services = cls()
        names = configured_executor_classes()
        try:
            if "CeleryExecutor" in names:
                if autoscale:
                    services._start_autoscaled_workers()
                else:
                    services._start_celery_workers()
            if "KubernetesExecutor" in names:
                services._start_pod_runtime()
        except BaseException:
            services.close()
            raise
        return services

    def describe(self) -> list[str]:
        return list(self._descriptions)

    def _start_celery_workers(self) -> None:
        from crossdock.executors.celery_worker import start_embedded_workers
        from crossdock.monitoring.local_workers import local_worker_concurrency
        from crossdock.monitoring.worker_drain import IdleAwareWorkerStop

        queues = embedded_worker_queues()
        concurrency = local_worker_concurrency()
        workers = start_embedded_workers(queues=queues, concurrency=concurrency)
        self._stoppers.append(("celery workers", IdleAwareWorkerStop(workers, queues)))
        self._descriptions.append(f"celery worker ({concurrency} processes) consuming {', '.join(queues)}")

    def _start_autoscaled_workers(self) -> None:
        from crossdock.monitoring.autoscaler import Autoscaler
        from crossdock.monitoring.local_workers import LocalWorkerPool, local_worker_concurrency
        from crossdock.monitoring.queue_monitor import QueueMonitor
        from crossdock.monitoring.worker_queues import WorkerQueues

        # An unlisted queue's worker runs local_worker_concurrency() processes, so that is
        # what the formula divides by (not [celery] worker_concurrency, sized for servers).
        worker_queues = WorkerQueues.from_config(tasks_per_worker=local_worker_concurrency())
        monitor = QueueMonitor(worker_queues=worker_queues)
        pool = LocalWorkerPool(worker_queues=worker_queues)
        self._stoppers.append(("local celery workers", _Closing(pool)))
        autoscaler = Autoscaler(monitor=monitor, pool=pool)
        # The first step reads no worker (there is none yet: asking would cost a reply
        # timeout) and the queues' minimum workers consume before the scheduler starts.
        decisions = autoscaler.decide(QueueMonitor(read_workers=False, worker_queues=worker_queues).refresh())
        pool.wait_ready()
        self._stoppers.append(("autoscaler", autoscaler))
        autoscaler.start()
        self.monitor, self.autoscaler = monitor, autoscaler
        self._descriptions.append(describe_autoscaling(autoscaler, pool, [d.queue for d in decisions]))

    def _start_pod_runtime(self) -> None:
        from crossdock.kubernetes.local_runtime.standalone import start_runtime_unless_configured

        runtime = start_runtime_unless_configured()
        if runtime is not None:
            self._stoppers.append(("local pod runtime", runtime))
            self._descriptions.append(f"local pod runtime at {runtime.url} (kubeconfig {runtime.kubeconfig_path})")

    def close(self) -> None:
        while self._stoppers:
            name, service = self._stoppers.pop()
            try:
                service.stop()
            except Exception:  # noqa: BLE001 - stop the rest regardless
                log.exception("could not stop %s", name)

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Closing:
    """``stop()`` for something that ``close()``s (the worker pool)."""

    def __init__(self, closable) -> None:
        self.closable = closable

    def stop(self) -> None:
        self.closable.close()


def standalone_autoscale() -> bool:
    """``[worker_queues] autoscale``, on under ``crossdock standalone`` unless the user set it."""
    from crossdock.configuration import conf

    if conf.has_option("worker_queues", "autoscale"):
        return conf.getboolean("worker_queues", "autoscale")
    return True


def describe_autoscaling(autoscaler, pool, queues: list[str]) -> str:
    """One line: which queues are autoscaled, between which bounds, with how many processes each."""
    parts = []
    for queue in queues:
        spec = autoscaler.worker_queues.spec_for(queue)
        parts.append(f"{queue} {spec.min_workers}-{spec.max_workers} workers x {pool.processes_per_worker(queue)} "
                     f"processes")
    return (f"autoscaling local celery workers every {autoscaler.interval:g} s (cool-down {autoscaler.cooldown:g} s, "
            f"queues a DAG adds later on the defaults): {', '.join(parts) or 'no queue yet'}")


def embedded_worker_queues() -> list[str]:
    """The default queue plus every non-Kubernetes queue a parsed DAG uses."""
    from sqlalchemy import select

    from crossdock.configuration import conf
    from crossdock.database import create_session
    from crossdock.models import SerializedDagModel

    kubernetes_queue = conf.get("celery_kubernetes_executor", "kubernetes_queue", fallback="kubernetes")
    queues = {conf.getstr("core", "default_queue")}
    with create_session() as session:
        for data in session.scalars(select(SerializedDagModel.data)):
            for task in (data.get("tasks") or {}).values():
                if task.get("queue") and task["queue"] != kubernetes_queue:
                    queues.add(task["queue"])
    return sorted(queues)
