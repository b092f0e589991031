"""CeleryKubernetesExecutor: each task goes, by its queue, to Celery workers or a pod of its own.

Every name, signature and meaning follows the seed's contract (Airflow's
``CeleryKubernetesExecutor``): a task instance whose queue equals ``kubernetes_queue``
(``[celery_kubernetes_executor] kubernetes_queue``, default ``kubernetes``) goes to the
KubernetesExecutor; every other queue, and no queue, goes to the CeleryExecutor.
``[executor_routing] rules`` may add glob rules (``gpu-* = KubernetesExecutor``), checked
before that default rule. A task's own ``executor=`` naming one of the two children wins.

Capacity: ``slots_available`` and ``slots_occupied`` are the sums of the two children's,
so the scheduler can fill both sides; each child still enforces its own parallelism.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from crossdock.configuration import conf
from crossdock.executors.base_executor import BaseExecutor, CommandType
from crossdock.executors.task_event import EventBufferValueType, TaskEvent
from crossdock.executors.routing import RoutingRule, configured_rules
from crossdock.models.taskinstancekey import TaskInstanceKey

if TYPE_CHECKING:
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.executors.kubernetes_executor import KubernetesExecutor
    from crossdock.models.taskinstance import TaskInstance

CELERY = "CeleryExecutor"
KUBERNETES = "KubernetesExecutor"


class CeleryKubernetesExecutor(BaseExecutor):
    """Routes each task to a CeleryExecutor or a KubernetesExecutor by its queue."""

    # The other capability flags (pickling, sentry, local, production, logs) are the base's.
    supports_ad_hoc_ti_run: bool = True

    def __init__(self, celery_executor: "CeleryExecutor | None" = None,
                 kubernetes_executor: "KubernetesExecutor | None" = None):
        super().__init__()
        if celery_executor is None:
            from crossdock.executors.celery_executor import CeleryExecutor

            celery_executor = CeleryExecutor()
        if kubernetes_executor is None:
            from crossdock.executors.kubernetes_executor import KubernetesExecutor

            kubernetes_executor = KubernetesExecutor()
        self.celery_executor = celery_executor
        self.kubernetes_executor = kubernetes_executor
        self.celery_executor.name = self.celery_executor.name or CELERY
        self.kubernetes_executor.name = self.kubernetes_executor.name or KUBERNETES
        self.kubernetes_executor.kubernetes_queue = self.kubernetes_queue
        self._rules: list[RoutingRule] = [
            rule for rule in configured_rules() if rule.executor in (CELERY, KUBERNETES)
        ] + [RoutingRule(self.kubernetes_queue, KUBERNETES)]

    # -- composition -------------------------------------------------------------------
    @property
    def child_executors(self) -> dict[str, BaseExecutor]:
        """The children by the names a task's ``executor=`` may use (Celery first)."""
        return {CELERY: self.celery_executor, KUBERNETES: self.kubernetes_executor}

    def _children(self) -> tuple[BaseExecutor, BaseExecutor]:
        return self.celery_executor, self.kubernetes_executor

    @property
    def kubernetes_queue(self) -> str:
        return conf.getstr("celery_kubernetes_executor", "kubernetes_queue")

    def route_child(self, queue: str | None) -> tuple[str, str]:
        """The child for a queue and why: the first of the hybrid's rules it matches, else Celery."""
        for rule in self._rules:
            if rule.matches(queue):
                if rule.pattern == self.kubernetes_queue and rule is self._rules[-1]:
                    return rule.executor, f"queue {queue!r} is [celery_kubernetes_executor] kubernetes_queue"
                return rule.executor, f"queue {queue!r} matched [executor_routing] rule {rule.pattern!r}"
        return CELERY, f"queue {queue!r} is not [celery_kubernetes_executor] kubernetes_queue"

    def _executor_for_queue(self, queue: str | None) -> BaseExecutor:
        return self.child_executors[self.route_child(queue)[0]]

    def _router(self, task_instance: Any) -> BaseExecutor:
        """The child that owns a task instance: the child it names (the scheduler routed it
        and recorded the child), else by its queue (a task handed over programmatically)."""
        named = getattr(task_instance, "executor", None)
        if named in (CELERY, KUBERNETES):
            return self.child_executors[named]
        return self._executor_for_queue(getattr(task_instance, "queue", None))

    def executor_name_for(self, ti: "TaskInstance") -> str:
        return self._router(ti).executor_name_for(ti)

    def new_external_id(self, ti: "TaskInstance") -> str | None:
        return self._router(ti).new_external_id(ti)

    # -- the merged view ---------------------------------------------------------------
    @property
    def queued_tasks(self) -> dict[TaskInstanceKey, Any]:
        queued = dict(self.celery_executor.queued_tasks)
        queued.update(self.kubernetes_executor.queued_tasks)
        return queued

    @queued_tasks.setter
    def queued_tasks(self, value) -> None:
        """BaseExecutor.__init__ assigns it; the hybrid holds nothing of its own."""

    @property
    def running(self) -> set[TaskInstanceKey]:
        return self.celery_executor.running | self.kubernetes_executor.running

    @running.setter
    def running(self, value) -> None:
        """BaseExecutor.__init__ assigns it; the hybrid holds nothing of its own."""

    @property
    def slots_available(self) -> int:
        return self.celery_executor.slots_available + self.kubernetes_executor.slots_available

    @property
    def slots_occupied(self) -> int:
        return self.celery_executor.slots_occupied + self.kubernetes_executor.slots_occupied

    # -- lifecycle (Celery first) ---------------------------------------------------------
    def _each_child(self, method: str) -> None:
        for child in self._children():
            getattr(child, method)()

    def start(self) -> None:
        self._each_child("start")

    def heartbeat(self) -> None:
        self._each_child("heartbeat")

    def end(self) -> None:
        self._each_child("end")

    def terminate(self) -> None:
        self._each_child("terminate")

    def debug_dump(self) -> None:
        self.log.info("Dumping CeleryExecutor state")
        self.celery_executor.debug_dump()
        self.log.info("Dumping KubernetesExecutor state")
        self.kubernetes_executor.debug_dump()

    # -- work in --------------------------------------------------------------------------
    def queue_command(self, task_instance: "TaskInstance", command: CommandType,
                      priority: int = 1, queue: str | None = None) -> None:
        self._router(task_instance).queue_command(task_instance, command, priority, queue)

    def queue_task_instance(self, task_instance: "TaskInstance", **kwargs: Any) -> None:
        self._router(task_instance).queue_task_instance(task_instance, **kwargs)

    def execute_async(self, key: TaskInstanceKey, command: CommandType, queue: str | None = None,
                      executor_config: Any | None = None) -> None:
        """Start a command directly on the child that owns ``queue`` (the seed's programmatic use)."""
        self._executor_for_queue(queue)._start_task(key, command, queue, executor_config)

    def sync(self) -> None:
        for child in self._children():
            child.sync()

    def has_task(self, task_instance: "TaskInstance") -> bool:
        return any(child.has_task(task_instance) for child in self._children())

    # -- results out ------------------------------------------------------------------------
    def get_event_buffer(self, dag_ids: list[str] | None = None) -> dict[TaskInstanceKey, EventBufferValueType]:
        """Both children's events (and any written to the hybrid itself) as ``(state, info)``."""
        events = super().get_event_buffer(dag_ids)
        for child in self._children():
            events.update(child.get_event_buffer(dag_ids))
        return events

    def pop_task_events(self, dag_ids: list[str] | None = None) -> dict[TaskInstanceKey, TaskEvent]:
        """Both children's events (and any written to the hybrid itself), typed."""
        events = super().pop_task_events(dag_ids)
        for child in self._children():
            events.update(child.pop_task_events(dag_ids))
        return events

    def wait_for_events(self, timeout: float) -> None:
        import time

        time.sleep(min(timeout, 0.01))

    # -- recovery and control ---------------------------------------------------------------
    def try_adopt_task_instances(self, tis: Sequence["TaskInstance"]) -> Sequence["TaskInstance"]:
        celery_tis = [ti for ti in tis if self._router(ti) is self.celery_executor]
        kubernetes_tis = [ti for ti in tis if self._router(ti) is self.kubernetes_executor]
        return [*self.celery_executor.try_adopt_task_instances(celery_tis),
                *self.kubernetes_executor.try_adopt_task_instances(kubernetes_tis)]

    def cleanup_stuck_queued_tasks(self, tis: list["TaskInstance"]) -> list[str]:
        celery_tis = [ti for ti in tis if self._router(ti) is self.celery_executor]
        kubernetes_tis = [ti for ti in tis if self._router(ti) is self.kubernetes_executor]
        return [*self.celery_executor.cleanup_stuck_queued_tasks(celery_tis),
                *self.kubernetes_executor.cleanup_stuck_queued_tasks(kubernetes_tis)]

    def revoke_task(self, *, ti: "TaskInstance") -> None:
        self._router(ti).revoke_task(ti=ti)

    def get_task_log(self, ti: "TaskInstance", try_number: int) -> tuple[list[str], list[str]]:
        return self._router(ti).get_task_log(ti, try_number)

    @staticmethod
    def get_cli_commands() -> list:
        from crossdock.executors.celery_executor import CeleryExecutor
        from crossdock.executors.kubernetes_executor import KubernetesExecutor

        return [*CeleryExecutor.get_cli_commands(), *KubernetesExecutor.get_cli_commands()]
