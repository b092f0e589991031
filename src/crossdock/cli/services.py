"""The helper processes an executor needs on one machine (Celery workers, local pod runtime).

``crossdock standalone`` and ``crossdock demo`` start them; a production deployment
starts workers with ``crossdock celery worker`` and points at a real cluster instead.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Iterable

from crossdock.executors.base_executor import BaseExecutor

log = logging.getLogger("crossdock.services")


def _class_names(executors: Iterable[BaseExecutor]) -> set[str]:
    names: set[str] = set()
    for executor in executors:
        names.add(type(executor).__name__)
        for child in ("celery_executor", "kubernetes_executor"):
            inner = getattr(executor, child, None)
            if inner is not None:
                names.add(type(inner).__name__)
    return names


class EmbeddedServices(AbstractContextManager):
    """Starts what the given executors need; stops it all on exit."""

    def __init__(self) -> None:
        self._stoppers: list[tuple[str, object]] = []
        self._descriptions: list[str] = []

    @classmethod
    def for_executors(cls, executors: Iterable[BaseExecutor]) -> "EmbeddedServices":
        services = cls()
        names = _class_names(executors)
        try:
            if "CeleryExecutor" in names:
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
        from crossdock.configuration import conf
        from crossdock.executors.celery_worker import start_embedded_workers

        queues = embedded_worker_queues()
        workers = start_embedded_workers(queues=queues, concurrency=conf.getint("celery", "worker_concurrency"))
        self._stoppers.append(("celery workers", workers))
        self._descriptions.append(f"celery worker consuming {', '.join(queues)}")

    def _start_pod_runtime(self) -> None:
        from crossdock.kubernetes.standalone import start_runtime_unless_configured

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
