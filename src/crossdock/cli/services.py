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
    """Starts what the given executors need; stops it all on exit."""

    def __init__(self) -> None:
        self._stoppers: list[tuple[str, object]] = []
        self._descriptions: list[str] = []

    @classmethod
    def for_configured_executors(cls) -> "EmbeddedServices":
        """Start them before the executors are built: the pod runtime changes their settings."""
        services = cls()
        names = configured_executor_classes()
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
        import os

        from crossdock.configuration import conf
        from crossdock.executors.celery_app import get_celery_app  # noqa: F401 - declares [celery]
        from crossdock.executors.celery_worker import start_embedded_workers

        queues = embedded_worker_queues()
        # One machine: more pool processes than cores only adds start-up time and memory.
        concurrency = min(conf.getint("celery", "worker_concurrency"), max(2, os.cpu_count() or 2))
        workers = start_embedded_workers(queues=queues, concurrency=concurrency)
        self._stoppers.append(("celery workers", IdleAwareWorkerStop(workers, queues)))
        self._descriptions.append(f"celery worker ({concurrency} processes) consuming {', '.join(queues)}")

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


#: Seconds each control request to an embedded worker waits for its reply.
CONTROL_REPLY_TIMEOUT = 1.0


class IdleAwareWorkerStop:
    """Stops the embedded workers at once when they run nothing, with a warm shutdown when they do.

    A warm shutdown (SIGTERM) of a worker on a polling broker such as the serverless
    filesystem one costs seconds even when idle: Celery's blocking consumer loop finishes
    its 2 s ``drain_events`` wait and then runs one more, the pool's and timer's threads
    are joined on 1 s ticks, and so on (about 7 s measured). So the worker is first asked
    to stop consuming its queues and then whether it holds any task (active or reserved);
    replies come in the order the requests were made, so no message can slip in between.
    An idle worker is killed outright, its pool processes and zygotes dying with it; a
    busy or silent one gets the warm shutdown, which lets running tries finish.
    """

    def __init__(self, workers, queues: list[str]) -> None:
        self.workers = workers
        self.queues = list(queues)

    def stop(self) -> None:
        if self.workers.alive() and self._idle():
            self.workers.kill()
        self.workers.stop()  # reaps, kills any straggler, removes the pid and ready files

    def _idle(self) -> bool:
        try:
            from crossdock.executors.celery_app import get_celery_app

            control = get_celery_app().control
            for hostname in self.workers.hostnames:
                for queue in self.queues:
                    if not control.cancel_consumer(queue, destination=[hostname], reply=True,
                                                   timeout=CONTROL_REPLY_TIMEOUT, limit=1):
                        return False
                inspect = control.inspect(destination=[hostname], timeout=CONTROL_REPLY_TIMEOUT, limit=1)
                for held in (inspect.active(), inspect.reserved()):
                    if held is None or any(held.values()):
                        return False
        except Exception:  # noqa: BLE001 - when in doubt, the warm shutdown is the safe way
            log.warning("could not tell whether the embedded workers are idle; stopping them warm",
                        exc_info=True)
            return False
        return True


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
