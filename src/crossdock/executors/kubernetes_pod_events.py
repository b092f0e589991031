"""What the pod watchers saw, turned into the tries' events.

A mixin of :class:`~crossdock.executors.kubernetes_executor.KubernetesExecutor`, run in
the scheduler's thread on the events the watcher threads queued. A pod that failed
before its task could start gets one new pod for the same try; a pod deleted under its
try, or failed by its node, is an infrastructure loss (the try runs again, uncharged);
a pod that vanished while nobody watched fails its try, saying so.
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Any

import urllib3
from kubernetes.client.rest import ApiException

from crossdock.executors.kubernetes_pods import PodLaunch, PodRecord
from crossdock.executors.task_event import TaskEvent
from crossdock.kubernetes.kube_watcher import (
    DELETED, FAILED, NOT_STARTED_POD_REASONS, RELISTED, RUNNING, SUCCESS, PodEvent, interpret_pod,
)
from crossdock.kubernetes.pod_generator import PodOverrideError
from crossdock.state import TaskInstanceState

if TYPE_CHECKING:
    from kubernetes import client

    from crossdock.kubernetes.kube_config import KubeExecutorConfig
    from crossdock.models.taskinstancekey import TaskInstanceKey

#: How many times a pod that failed before its task started is replaced (same try).
MAX_RELAUNCHES = 1


def lost_with_node_or_deletion(pod: dict[str, Any]) -> bool:
    """Whether a failed pod was failed by its node (evicted, node lost, shut down) or deleted
    under its running try, rather than by the task's own exit: an infrastructure loss."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if status.get("reason") in NOT_STARTED_POD_REASONS:
        return True
    return bool(meta.get("deletionTimestamp")) and status.get("phase") in ("Running", "Pending")


class PodEventHandling:
    """Applies the watchers' pod events to the tries (see the module docstring)."""

    core: "client.CoreV1Api | None"
    settings: "KubeExecutorConfig"
    _events: "queue.SimpleQueue[PodEvent]"
    _launches: Any
    _records: dict["TaskInstanceKey", PodRecord]
    _by_pod: dict[tuple[str, str], "TaskInstanceKey"]

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
            from crossdock.runner.try_values import values_from_output

            # The pod's last log line carries the values its try pushed (the runner writes it).
            self.report_event(record.key, TaskEvent(TaskInstanceState.SUCCESS,
                                                    result=values_from_output(log_text)))
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
