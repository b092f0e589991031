"""KubernetesExecutor: every task try runs in a pod of its own, through the official client.

``execute_async`` builds the try's pod (template + ``pod_override`` + the task command)
and queues its launch; ``sync`` creates queued pods in batches, then applies what the
pod watchers saw. Everything that touches the executor's state runs in the scheduler's
thread: watcher threads only put events on a queue (and wake an idle scheduler).

What a try's pod means for the try:

* Running → running (the pod name is the try's hostname);
* Succeeded → success; Failed → failed, with the container's reason and exit code and
  the task's own failure line from the pod log;
* Pending with a fatal container reason (ErrImagePull, ...) → failed at once;
* failed before the task could start (evicted, node lost) → one new pod, same try;
* deleted under its try, or failed by its node later → failed as an infrastructure
  loss (run again, not charged to the task's retries);
* vanished while unwatched → failed, saying so.

Logs survive pods: before a finished pod is deleted its container log is saved into the
try's log file. Pods carry the scheduler job id in a label, so a new scheduler finds the
pods of a dead one and adopts them (:meth:`KubernetesExecutor.try_adopt_task_instances`).

This module holds the lifecycle, the queue and the event buffer; creating pods
(``kubernetes_pod_launcher``), applying what the watchers saw (``kubernetes_pod_events``),
keeping pod logs (``kubernetes_pod_logs``) and adopting a dead scheduler's pods
(``kubernetes_adoption``) and warm pods (``kubernetes_warm_pool``, off by default) each live in
a module of their own.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from crossdock.configuration import conf
from crossdock.executors.base_executor import BaseExecutor, CommandType
from crossdock.executors.kubernetes_adoption import PodAdoption
from crossdock.executors.kubernetes_pod_env import POD_RUNNER_ENV, local_environment
from crossdock.executors.kubernetes_pod_events import PodEventHandling, lost_with_node_or_deletion
from crossdock.executors.kubernetes_pod_launcher import PodLaunching
from crossdock.executors.kubernetes_pod_logs import PodLogs
from crossdock.executors.kubernetes_pods import PodLaunch, PodRecord, api_message
from crossdock.executors.kubernetes_warm_pool import WarmPoolMixin
from crossdock.kubernetes.kube_client import ApiCallCounter, get_kube_client
from crossdock.kubernetes.kube_config import KubeExecutorConfig
from crossdock.kubernetes.kube_watcher import KubeWatcher, PodEvent
from crossdock.kubernetes.pod_generator import (
    EXECUTOR_LABEL, WORKER_LABEL, PodOverrideError, construct_pod, load_pod_template, make_safe_label_value,
    pod_override_of,
)
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.state import TaskInstanceState

if TYPE_CHECKING:
    from crossdock.models.taskinstance import TaskInstance

#: Names importers have always found here.
__all__ = ["KubernetesExecutor", "PodLaunch", "PodRecord", "local_environment", "lost_with_node_or_deletion"]

#: How long ``end`` waits for the watchers to stop.
WATCHER_STOP_SECONDS = 5.0

TERMINATED_REASON = "kubernetes executor terminated"


class KubernetesExecutor(WarmPoolMixin, PodLaunching, PodEventHandling, PodLogs, PodAdoption, BaseExecutor):
    """Runs each task try in its own pod.

    :param parallelism: most tries in flight; default ``[core] parallelism``.
    :param api_client: a configured ``kubernetes.client.ApiClient``; by default one built
        from ``[kubernetes_executor]`` in_cluster / config_file / cluster_context.
    :param settings: the ``[kubernetes_executor]`` values; read from configuration when None.
    """

    supports_ad_hoc_ti_run = True
    supports_pickling = False
    is_local = False
    is_production = True
    serve_logs = False

    def __init__(self, parallelism: int | None = None, *, api_client: client.ApiClient | None = None,
                 settings: KubeExecutorConfig | None = None):
        if parallelism is None:
            parallelism = conf.getint("core", "parallelism")
        super().__init__(parallelism=parallelism)
        self.settings = settings or KubeExecutorConfig.from_conf()
        self.api_client = api_client
        self.core: client.CoreV1Api | None = None
        self.api_calls: ApiCallCounter | None = None
        self.template: dict[str, Any] | None = None
        self.watchers: dict[str | None, KubeWatcher] = {}
        self._events: queue.SimpleQueue[PodEvent] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._launches: deque[PodLaunch] = deque()
        self._records: dict[TaskInstanceKey, PodRecord] = {}
        self._by_pod: dict[tuple[str, str], TaskInstanceKey] = {}
        self._create_paused_until = 0.0
        self._pod_env: dict[str, str] = {}
        self._started = False
        #: Events held back one sync so they do not overwrite an unread earlier one of the same key.
        self._deferred: list[tuple[TaskInstanceKey, str, Any, bool]] = []

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def worker_label(self) -> str:
        """This executor's ``crossdock-worker`` label value (its scheduler job id)."""
        return make_safe_label_value(self.job_id if self.job_id is not None else "none")

    def _selector(self, job_label: str | None = None) -> str:
        return f"{EXECUTOR_LABEL}=True,{WORKER_LABEL}={job_label or self.worker_label}"

    def watched_namespaces(self) -> list[str | None]:
        """Namespaces with a watcher of their own; ``[None]`` means one watcher for all of them."""
        if not self.settings.multi_namespace_mode:
            return [self.settings.namespace]
        return list(self.settings.multi_namespace_mode_namespace_list) or [None]

    def start(self) -> None:
        """Build the client and the template, and start one pod watcher per watched namespace."""
        if self._started:
            return
        self._started = True
        if self.api_client is None:
            self.api_client = get_kube_client()
        self.api_calls = ApiCallCounter(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.template = load_pod_template(self.settings.pod_template_file)
        self._pod_env = local_environment() if self.settings.share_local_environment else {}
        for namespace in self.watched_namespaces():
            watcher = KubeWatcher(core=self.core, namespace=namespace, label_selector=self._selector(),
                                  sink=self._on_pod_event)
            self.watchers[namespace] = watcher
            watcher.start()
        self.log.info("kubernetes executor watching %s for %s",
                      ", ".join(ns or "all namespaces" for ns in self.watchers), self._selector())

    def _on_pod_event(self, event: PodEvent) -> None:
        """Called from a watcher thread: hand over and wake the scheduler."""
        self._events.put(event)
        self._wake.set()

    def end(self) -> None:
        """Create what is queued, apply what was seen, stop watching; pods go on and are adopted later."""
        if self._started:
            self.sync()
            self._drop_warm_pods()
        self._release_deferred(force=True)
        self._stop_watchers()

    def terminate(self) -> None:
        """Delete every pod this executor follows, fail their tries, stop watching."""
        if self._started:
            for record in list(self._records.values()):
                if record.created:
                    self._delete_pod(record.name, record.namespace, grace_seconds=0)
                self._forget(record)
                self.fail(record.key, TERMINATED_REASON)
            for launch in self._launches:
                self.fail(launch.key, TERMINATED_REASON)
            self._launches.clear()
            self._drop_warm_pods()
        self._release_deferred(force=True)
        self._stop_watchers()

    def _stop_watchers(self) -> None:
        for watcher in self.watchers.values():
            watcher.stop(WATCHER_STOP_SECONDS)
        self.watchers.clear()

    def wait_for_events(self, timeout: float) -> None:
        """Sleep until a watcher sees something (or a queued launch is due)."""
        if self._deferred or (self._launches and self._launches[0].not_before <= time.monotonic()
                             and self._create_paused_until <= time.monotonic()):
            return
        if self._wake.wait(timeout):
            self._wake.clear()

    # -- queueing --------------------------------------------------------------------------
    def execute_async(self, key: TaskInstanceKey, command: CommandType, queue: str | None = None,
                      executor_config: Any | None = None) -> None:
        """Build the try's pod and queue its creation; a refused command or a bad pod fails the try now.

        ``[kubernetes_executor] validate_commands = False`` skips the command policy (the
        pod's own runner still refuses a DAG file outside its DAGs folder).
        """
        self.start()
        if self.settings.validate_commands and self.refuse_command(key, command):
            return
        try:
            pod = self._build_pod(key, list(command), executor_config)
        except PodOverrideError as exc:
            reason = f"invalid pod_override: {exc}"
            self.log.error("task %s failed before a pod was created: %s", key, reason)
            self.fail(key, reason)
            return
        record = PodRecord(key=key, name=pod["metadata"]["name"], namespace=pod["metadata"]["namespace"],
                           command=list(command), executor_config=executor_config)
        self._records[key] = record
        self._launches.append(PodLaunch(key=key, pod=pod, profile=self.warm_profile_of(pod, list(command))))

    def _build_pod(self, key: TaskInstanceKey, command: list[str], executor_config: Any) -> dict[str, Any]:
        pod = construct_pod(key=key, command=command, scheduler_job_id=self.job_id if self.job_id is not None
                            else "none", template=self.template, pod_override=pod_override_of(executor_config),
                            namespace=self.settings.namespace, image=self.settings.worker_image,
                            env={**self._pod_env, **POD_RUNNER_ENV})
        namespace = pod["metadata"]["namespace"]
        if not self.settings.multi_namespace_mode and namespace != self.settings.namespace:
            raise PodOverrideError(f"namespace {namespace!r} differs from [kubernetes_executor] namespace "
                                   f"{self.settings.namespace!r}; set multi_namespace_mode to use other namespaces")
        allowed = self.settings.multi_namespace_mode_namespace_list
        if self.settings.multi_namespace_mode and allowed and namespace not in allowed:
            raise PodOverrideError(f"namespace {namespace!r} is not in [kubernetes_executor] "
                                   f"multi_namespace_mode_namespace_list ({', '.join(allowed)})")
        return pod

    # -- sync ------------------------------------------------------------------------------
    def sync(self) -> None:
        """Create due pods (one batch), apply watcher events."""
        self.start()
        self._release_deferred()
        self._warm_sync()
        self._create_pods()
        self._apply_events()

    def change_state(self, key: TaskInstanceKey, state: str, info: Any = None,
                     remove_running: bool = True) -> None:
        """Record an event; one that would overwrite an unread event of the same key waits a sync.

        The event buffer holds one event per key. A pod that is created, runs and ends
        between two scheduler reads would otherwise report only its end, and the try
        would lose its pod name (hostname) and its start time.
        """
        pending = self.event_buffer.event(key)
        if any(item[0] == key for item in self._deferred) or (pending is not None and pending.state != state):
            self._deferred.append((key, state, info, remove_running))
            return
        super().change_state(key, state, info, remove_running)

    def queued(self, key: TaskInstanceKey, info: Any = None) -> None:
        """Record QUEUED (info: the pod name) and keep the key running: a created pod holds its slot."""
        self.change_state(key, TaskInstanceState.QUEUED, info, remove_running=False)

    def _release_deferred(self, *, force: bool = False) -> None:
        """Emit held-back events whose key's earlier event was read; ``force``: the latest wins now."""
        deferred, self._deferred = self._deferred, []
        for key, state, info, remove_running in deferred:
            if force:
                super().change_state(key, state, info, remove_running)
            else:
                self.change_state(key, state, info, remove_running)

    def _forget(self, record: PodRecord) -> None:
        if self._records.get(record.key) is record:
            del self._records[record.key]
        if self._by_pod.get((record.namespace, record.name)) == record.key:
            del self._by_pod[(record.namespace, record.name)]

    # -- deletion, revocation ----------------------------------------------------------------------
    def _delete_pod(self, name: str, namespace: str, *, grace_seconds: int | None = None) -> bool:
        kwargs: dict[str, Any] = {"_preload_content": False}
        if grace_seconds is not None:
            kwargs["grace_period_seconds"] = grace_seconds
        try:
            self.core.delete_namespaced_pod(name, namespace, **kwargs)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return True
            self.log.warning("could not delete pod %s/%s: %s", namespace, name, api_message(exc))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self.log.warning("could not delete pod %s/%s: %s", namespace, name, exc)
        return False

    def revoke_task(self, *, ti: "TaskInstance") -> None:
        """Forget the try and delete its pod (or drop its queued launch)."""
        self.start()
        key = ti.key
        record = self._records.get(key)
        if record is not None:
            self._forget(record)
            if record.created:
                self._delete_pod(record.name, record.namespace)
        elif ti.external_executor_id:
            namespace = self.settings.namespace
            self._delete_pod(str(ti.external_executor_id), namespace)
        self._launches = deque(launch for launch in self._launches if launch.key != key)
        self.queued_tasks.pop(key, None)
        self.running.discard(key)
        self.event_buffer.pop(key, None)
        self._deferred = [item for item in self._deferred if item[0] != key]

    def cleanup_stuck_queued_tasks(self, tis: list["TaskInstance"]) -> list[str]:
        """Revoke tries stuck in queued (their pods are deleted); one readable line each."""
        lines = []
        for ti in tis:
            record = self._records.get(ti.key)
            pod = record.name if record is not None else ti.external_executor_id
            self.revoke_task(ti=ti)
            lines.append(f"{ti.key}: stuck in queued; pod {pod or '(not created)'} deleted")
        return lines

    # -- introspection ------------------------------------------------------------------------------------
    def pod_name(self, key: TaskInstanceKey) -> str | None:
        """The pod that runs (or will run) ``key``, if this executor follows it."""
        record = self._records.get(key)
        return record.name if record is not None else None

    def debug_dump(self) -> None:
        super().debug_dump()
        self.log.info("  %d pod launches queued, %d pods followed, creation paused for %.1f s",
                      len(self._launches), len(self._records),
                      max(0.0, self._create_paused_until - time.monotonic()))
        for record in self._records.values():
            self.log.info("  pod %s/%s: %s created=%s running=%s", record.namespace, record.name, record.key,
                          record.created, record.reported_running)

    @staticmethod
    def get_cli_commands() -> list:
        """The ``kubernetes`` group: local-runtime, generate-dag-yaml, cleanup-pods."""
        from crossdock.executors.kubernetes_cli import kubernetes_commands

        return [kubernetes_commands()]
