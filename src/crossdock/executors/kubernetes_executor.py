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
* deleted by someone else, or vanished while unwatched → failed, saying so;
* failed before the task could start (evicted, node lost) → one new pod, same try.

Logs survive pods: before a finished pod is deleted its container log is saved into the
try's log file. Pods carry the scheduler job id in a label, so a new scheduler finds the
pods of a dead one and adopts them (:meth:`KubernetesExecutor.try_adopt_task_instances`).
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from crossdock.config_secrets import environment_for_try
from crossdock.configuration import conf
from crossdock.executors.base_executor import BaseExecutor, CommandType
from crossdock.executors.task_event import TaskEvent
from crossdock.kubernetes.kube_client import ApiCallCounter, get_kube_client, retry_after_seconds
from crossdock.kubernetes.kube_config import KubeExecutorConfig
from crossdock.kubernetes.kube_watcher import (
    DELETED, FAILED, NOT_STARTED_POD_REASONS, RELISTED, RUNNING, SUCCESS, KubeWatcher, PodEvent, interpret_pod,
)
from crossdock.kubernetes.pod_generator import (
    BASE_CONTAINER_NAME, EXECUTOR_LABEL, WORKER_LABEL, PodOverrideError, annotations_to_key, construct_pod,
    load_pod_template, make_safe_label_value, pod_override_of,
)
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.task_log import task_log_path_for_key
from crossdock.state import TaskInstanceState

if TYPE_CHECKING:
    from crossdock.models.taskinstance import TaskInstance

#: How many times a pod that failed before its task started is replaced (same try).
MAX_RELAUNCHES = 1
#: Back-off of a failed pod creation: first wait, doubling, capped.
PUBLISH_RETRY_SECONDS = 0.2
PUBLISH_RETRY_MAX_SECONDS = 10.0
#: Pause after a 429 that gave no Retry-After.
DEFAULT_RETRY_AFTER_SECONDS = 1.0
#: Status codes that fail a creation at once: the same request cannot succeed later.
PERMANENT_CREATE_ERRORS = (400, 403, 404, 422)
#: Lines of a running pod's log ``get_task_log`` returns.
RUNNING_LOG_TAIL_LINES = 1000
#: Environment variables handed to pods that run on this machine (share_local_environment).
LOCAL_ENV_NAMES = ("PYTHONPATH", "VIRTUAL_ENV", "CROSSDOCK_HOME", "CROSSDOCK_CONFIG")
#: How long ``end`` waits for the watchers to stop.
WATCHER_STOP_SECONDS = 5.0

TERMINATED_REASON = "kubernetes executor terminated"
LOG_SECTION_MARKER = "----- container log of pod"


@dataclass
class PodLaunch:
    """A pod waiting to be created (or re-created after a failed attempt)."""

    key: TaskInstanceKey
    pod: dict[str, Any]
    attempts: int = 0
    not_before: float = 0.0
    last_error: str | None = None


@dataclass
class PodRecord:
    """The pod of one try the executor follows."""

    key: TaskInstanceKey
    name: str
    namespace: str
    command: list[str]
    executor_config: Any = None
    created: bool = False
    reported_running: bool = False
    relaunches: int = 0
    adopted: bool = False


def lost_with_node_or_deletion(pod: dict[str, Any]) -> bool:
    """Whether a failed pod was failed by its node (evicted, node lost, shut down) or deleted
    under its running try, rather than by the task's own exit: an infrastructure loss."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if status.get("reason") in NOT_STARTED_POD_REASONS:
        return True
    return bool(meta.get("deletionTimestamp")) and status.get("phase") in ("Running", "Pending")


def _api_message(exc: ApiException) -> str:
    """The API server's own message for an error (its Status body), else the HTTP reason."""
    try:
        body = json.loads(exc.body) if exc.body else {}
        message = body.get("message") if isinstance(body, dict) else None
    except (TypeError, ValueError):
        message = None
    return f"{exc.status} {message or exc.reason or 'error'}"


class KubernetesExecutor(BaseExecutor):
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
        self._launches.append(PodLaunch(key=key, pod=pod))

    def _build_pod(self, key: TaskInstanceKey, command: list[str], executor_config: Any) -> dict[str, Any]:
        pod = construct_pod(key=key, command=command, scheduler_job_id=self.job_id if self.job_id is not None
                            else "none", template=self.template, pod_override=pod_override_of(executor_config),
                            namespace=self.settings.namespace, image=self.settings.worker_image, env=self._pod_env)
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

    def _create_pods(self) -> None:
        now = time.monotonic()
        if now < self._create_paused_until:
            return
        created = 0
        waiting: list[PodLaunch] = []
        while self._launches and created < self.settings.worker_pods_creation_batch_size:
            launch = self._launches.popleft()
            if launch.key not in self._records:  # revoked while queued
                continue
            if launch.not_before > now:
                waiting.append(launch)
                continue
            outcome = self._create_one(launch)
            if outcome == "paused":
                self._launches.appendleft(launch)
                break
            if outcome == "retry":
                waiting.append(launch)
            created += 1
        self._launches.extendleft(reversed(waiting))

    def _create_one(self, launch: PodLaunch) -> str:
        """Send one create; returns "created", "failed", "retry" or "paused" (429)."""
        record = self._records[launch.key]
        pod, namespace = launch.pod, launch.pod["metadata"]["namespace"]
        try:
            self.core.create_namespaced_pod(namespace, pod, _preload_content=False)
        except ApiException as exc:
            message = _api_message(exc)
            if exc.status == 429:
                pause = retry_after_seconds(exc) or DEFAULT_RETRY_AFTER_SECONDS
                self._create_paused_until = time.monotonic() + pause
                self.log.warning("pod creation throttled (429); pausing creation for %.1f s", pause)
                return "paused"
            if exc.status == 409 and self._is_our_pod(launch):
                return self._created(record, launch)  # an earlier attempt got through after all
            quota = exc.status == 403 and "exceeded quota" in message
            if exc.status in PERMANENT_CREATE_ERRORS and not quota:
                self._launch_failed(record, f"pod {record.name} could not be created: {message}")
                return "failed"
            return self._retry_launch(record, launch, message)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return self._retry_launch(record, launch, f"connection error: {exc}")
        return self._created(record, launch)

    def _is_our_pod(self, launch: PodLaunch) -> bool:
        meta = launch.pod["metadata"]
        try:
            existing = json.loads(self.core.read_namespaced_pod(meta["name"], meta["namespace"],
                                                                _preload_content=False).data)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError):
            return False
        return annotations_to_key((existing.get("metadata") or {}).get("annotations")) == launch.key

    def _retry_launch(self, record: PodRecord, launch: PodLaunch, message: str) -> str:
        launch.attempts += 1
        launch.last_error = message
        if launch.attempts > self.settings.task_publish_max_retries:
            self._launch_failed(record, f"pod {record.name} could not be created after {launch.attempts} "
                                        f"attempts: {message}")
            return "failed"
        delay = min(PUBLISH_RETRY_SECONDS * 2 ** (launch.attempts - 1), PUBLISH_RETRY_MAX_SECONDS)
        launch.not_before = time.monotonic() + delay
        self.log.warning("creating pod %s failed (%s); retry %d of %d in %.1f s", record.name, message,
                         launch.attempts, self.settings.task_publish_max_retries, delay)
        return "retry"

    def _created(self, record: PodRecord, launch: PodLaunch) -> str:
        record.created = True
        self._by_pod[(record.namespace, record.name)] = record.key
        if record.relaunches == 0:
            self.report_event(record.key, TaskEvent(TaskInstanceState.QUEUED, external_id=record.name))
        return "created"

    def _launch_failed(self, record: PodRecord, reason: str) -> None:
        self.log.error("task %s: %s", record.key, reason)
        self._forget(record)
        self.fail(record.key, reason)

    def _forget(self, record: PodRecord) -> None:
        if self._records.get(record.key) is record:
            del self._records[record.key]
        if self._by_pod.get((record.namespace, record.name)) == record.key:
            del self._by_pod[(record.namespace, record.name)]

    # -- watcher events -----------------------------------------------------------------------
    def _apply_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            try:
                if event.kind == RELISTED:
                    self._check_vanished(event)
                else:
                    self._apply_pod_event(event)
            except Exception:  # noqa: BLE001 - one odd pod must not stop the others' events
                self.log.exception("could not apply pod event %s", event.kind)

    def _apply_pod_event(self, event: PodEvent) -> None:
        pod = event.pod or {}
        meta = pod.get("metadata") or {}
        key = self._by_pod.get((meta.get("namespace", ""), meta.get("name", "")))
        record = self._records.get(key) if key is not None else None
        if record is None:
            return  # a pod we are done with (or never had): nothing to report
        outcome = interpret_pod(pod, fatal_reasons=self.settings.fatal_container_reasons)
        exists = event.kind != DELETED
        if not exists and outcome.state not in (SUCCESS, FAILED):
            self._finish(record, FAILED, f"pod {record.name} was deleted before its task finished", pod_exists=False,
                         lost=True)
            return
        if outcome.state == RUNNING:
            if not record.reported_running:
                record.reported_running = True
                self.report_event(record.key, TaskEvent(TaskInstanceState.RUNNING, hostname=record.name))
        elif outcome.state == SUCCESS:
            self._finish(record, SUCCESS, None, pod_exists=exists)
        elif outcome.state == FAILED:
            if (outcome.before_start and not record.reported_running and not record.adopted
                    and record.relaunches < MAX_RELAUNCHES):
                self._relaunch(record, outcome.reason)
                return
            self._finish(record, FAILED, outcome.reason, pod_exists=exists, force_delete=outcome.fatal_pending,
                         lost=lost_with_node_or_deletion(pod))

    def _check_vanished(self, event: PodEvent) -> None:
        """After a (re)list: a followed pod missing from it is confirmed gone, then its try failed."""
        present = event.present or frozenset()
        for record in list(self._records.values()):
            if not record.created or (event.namespace is not None and record.namespace != event.namespace):
                continue
            if (record.namespace, record.name) in present:
                continue
            try:
                self.core.read_namespaced_pod(record.name, record.namespace, _preload_content=False)
                continue  # created after the list was taken; its events are on the way
            except ApiException as exc:
                if exc.status != 404:
                    continue
            except (urllib3.exceptions.HTTPError, OSError):
                continue
            self._finish(record, FAILED, f"pod {record.name} vanished while it was not watched; "
                                         f"the try's outcome is unknown", pod_exists=False)

    def _relaunch(self, record: PodRecord, reason: str | None) -> None:
        """A pod failed before its task started: the same try gets a new pod, no retry spent."""
        self.log.warning("task %s: %s; the task had not started, launching a new pod", record.key, reason)
        self._delete_pod(record.name, record.namespace)
        self._forget(record)
        try:
            pod = self._build_pod(record.key, record.command, record.executor_config)
        except PodOverrideError as exc:  # cannot happen for a pod built once already, but never lose the try
            self.fail(record.key, f"invalid pod_override: {exc}")
            return
        fresh = PodRecord(key=record.key, name=pod["metadata"]["name"], namespace=pod["metadata"]["namespace"],
                          command=record.command, executor_config=record.executor_config,
                          relaunches=record.relaunches + 1)
        self._records[record.key] = fresh
        self._launches.append(PodLaunch(key=record.key, pod=pod))

    def _finish(self, record: PodRecord, state: str, reason: str | None, *, pod_exists: bool,
                force_delete: bool = False, lost: bool = False) -> None:
        """Report a final state: save the pod's log first, then delete the pod as configured.

        ``lost``: the pod was failed by its node or deleted under the try, not by the task.
        """
        log_text = self._save_log(record) if pod_exists else None
        if state == SUCCESS:
            self.success(record.key)
        else:
            from crossdock.runner.task_runner import failure_reason_from_stderr

            said = failure_reason_from_stderr(log_text) if log_text else None
            self.report_event(record.key, TaskEvent(
                TaskInstanceState.FAILED, reason=f"{said} ({reason})" if said and reason else (reason or said),
                infrastructure_loss=lost))
        self._forget(record)
        if not pod_exists:
            return
        if force_delete or (self.settings.delete_worker_pods
                            and (state == SUCCESS or self.settings.delete_worker_pods_on_failure)):
            self._delete_pod(record.name, record.namespace)

    # -- logs -----------------------------------------------------------------------------------
    def _read_pod_log(self, name: str, namespace: str, *, tail_lines: int | None = None) -> str | None:
        kwargs: dict[str, Any] = {"container": BASE_CONTAINER_NAME, "_preload_content": False}
        if tail_lines:
            kwargs["tail_lines"] = tail_lines
        try:
            response = self.core.read_namespaced_pod_log(name, namespace, **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            self.log.warning("could not read the log of pod %s: %s", name, getattr(exc, "reason", exc))
            return None
        return response.data.decode("utf-8", "replace")

    def _save_log(self, record: PodRecord) -> str | None:
        """Copy the pod's container log into the try's log file (the pod may be deleted next)."""
        text = self._read_pod_log(record.name, record.namespace)
        if not text:
            return text
        path = task_log_path_for_key(record.key)
        try:
            existing = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
            if text in existing:
                return text
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                if existing and not existing.endswith("\n"):
                    handle.write("\n")
                handle.write(f"{LOG_SECTION_MARKER} {record.namespace}/{record.name} -----\n")
                handle.write(text if text.endswith("\n") else text + "\n")
        except OSError as exc:
            self.log.warning("could not save the log of pod %s to %s: %s", record.name, path, exc)
        return text

    def get_task_log(self, ti: "TaskInstance", try_number: int) -> tuple[list[str], list[str]]:
        """The live pod's log while it runs, else the saved log file."""
        key = ti.key.with_try_number(try_number)
        record = self._records.get(key)
        if record is not None and record.created and self.core is not None:
            text = self._read_pod_log(record.name, record.namespace, tail_lines=RUNNING_LOG_TAIL_LINES)
            if text is not None:
                return [f"log of running pod {record.namespace}/{record.name}"], text.splitlines()
        path = task_log_path_for_key(key)
        if path.exists():
            return [f"log file {path}"], path.read_text(encoding="utf-8", errors="replace").splitlines()
        return [f"no log found for try {try_number} (no pod, no file at {path})"], []

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
            self.log.warning("could not delete pod %s/%s: %s", namespace, name, _api_message(exc))
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

    # -- adoption ---------------------------------------------------------------------------------------
    def _list_pods(self, selector: str) -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = []
        for namespace in self.watched_namespaces():
            if namespace is None:
                response = self.core.list_pod_for_all_namespaces(label_selector=selector, _preload_content=False)
            else:
                response = self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
            pods.extend(json.loads(response.data).get("items") or [])
        return pods

    def try_adopt_task_instances(self, tis: Sequence["TaskInstance"]) -> Sequence["TaskInstance"]:
        """Relabel the pods of dead scheduler jobs to this one and follow them; return the tries without a pod.

        The scheduler passes only tries whose scheduler job is gone, so a live sibling's
        pods are never touched. Finished pods of those dead jobs that no try waits for
        are deleted (when ``delete_worker_pods``).
        """
        self.start()
        by_job: dict[Any, list["TaskInstance"]] = {}
        for ti in tis:
            by_job.setdefault(ti.queued_by_job_id, []).append(ti)
        not_adopted: list["TaskInstance"] = []
        for job_id, group in by_job.items():
            if job_id is None:
                not_adopted.extend(group)
                continue
            try:
                pods = self._list_pods(self._selector(make_safe_label_value(job_id)))
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                self.log.warning("cannot list pods of scheduler job %s: %s", job_id, exc)
                not_adopted.extend(group)
                continue
            by_key = {}
            for pod in pods:
                key = annotations_to_key((pod.get("metadata") or {}).get("annotations"))
                if key is not None:
                    by_key[key] = pod
            for ti in group:
                pod = by_key.pop(ti.key, None)
                if pod is None or not self._adopt_pod(ti, pod):
                    not_adopted.append(ti)
            for pod in by_key.values():
                self._clean_up_orphan_pod(pod)
        return not_adopted

    def _adopt_pod(self, ti: "TaskInstance", pod: dict[str, Any]) -> bool:
        meta = pod["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        try:
            self.core.patch_namespaced_pod(name, namespace, {"metadata": {"labels": {WORKER_LABEL: self.worker_label}}},
                                           _preload_content=False)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            self.log.warning("could not adopt pod %s/%s for %s: %s", namespace, name, ti.key, exc)
            return False
        record = PodRecord(key=ti.key, name=name, namespace=namespace, command=[], created=True, adopted=True,
                           executor_config=getattr(ti, "executor_config", None),
                           reported_running=(pod.get("status") or {}).get("phase") == "Running")
        self._records[ti.key] = record
        self._by_pod[(namespace, name)] = ti.key
        self.running.add(ti.key)
        self.log.info("adopted pod %s/%s running %s", namespace, name, ti.key)
        return True

    def _clean_up_orphan_pod(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Succeeded" or (phase == "Failed" and self.settings.delete_worker_pods_on_failure):
            if self.settings.delete_worker_pods:
                self.log.info("deleting finished pod %s/%s of a dead scheduler", meta.get("namespace"), meta.get("name"))
                self._delete_pod(meta["name"], meta["namespace"])

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


def local_environment() -> dict[str, str]:
    """What a pod on this machine needs to run ``crossdock tasks run`` like this process would.

    ``crossdock`` is this install (bin folder first on PATH), with the scheduler's home, config, DAG
    and log folders; never the secrets a pods list would show (:func:`environment_for_try`)."""
    env: dict[str, str] = {}
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(part for part in (bin_dir, os.environ.get("PATH", "")) if part)
    for name in LOCAL_ENV_NAMES:
        if os.environ.get(name):
            env[name] = os.environ[name]
    for name, value in environment_for_try(os.environ).items():
        if name.startswith("CROSSDOCK__"):
            env[name] = value
    env["CROSSDOCK__CORE__DAGS_FOLDER"] = os.path.abspath(os.path.expanduser(conf.getstr("core", "dags_folder")))
    env["CROSSDOCK__LOGGING__BASE_LOG_FOLDER"] = os.path.abspath(
        os.path.expanduser(conf.getstr("logging", "base_log_folder")))
    return env
