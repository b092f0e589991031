"""Creating the pods the KubernetesExecutor queued: in batches, with back-off, and never twice.

A mixin of :class:`~crossdock.executors.kubernetes_executor.KubernetesExecutor`: it
works on the executor's queue of launches and its pod records. A creation that the
API server throttles (429) pauses all creation for its Retry-After; one that fails for
a reason that may pass (5xx, 409, a quota, the connection) is retried with back-off up
to ``[kubernetes_executor] task_publish_max_retries``; one that cannot succeed
(400, 403, 404, 422) fails its try at once. A 409 for a pod this executor made is an
earlier attempt that got through after all.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import TYPE_CHECKING

import urllib3
from kubernetes.client.rest import ApiException

from crossdock.executors.kubernetes_pods import PodLaunch, PodRecord, api_message
from crossdock.executors.task_event import TaskEvent
from crossdock.kubernetes.kube_client import retry_after_seconds
from crossdock.kubernetes.pod_generator import annotations_to_key
from crossdock.state import TaskInstanceState

if TYPE_CHECKING:
    from kubernetes import client

    from crossdock.kubernetes.kube_config import KubeExecutorConfig
    from crossdock.models.taskinstancekey import TaskInstanceKey

#: Back-off of a failed pod creation: first wait, doubling, capped.
PUBLISH_RETRY_SECONDS = 0.2
PUBLISH_RETRY_MAX_SECONDS = 10.0
#: Pause after a 429 that gave no Retry-After.
DEFAULT_RETRY_AFTER_SECONDS = 1.0
#: Status codes that fail a creation at once: the same request cannot succeed later.
PERMANENT_CREATE_ERRORS = (400, 403, 404, 422)


class PodLaunching:
    """Sends the executor's queued pod creations (see the module docstring)."""

    core: "client.CoreV1Api | None"
    settings: "KubeExecutorConfig"
    _launches: deque[PodLaunch]
    _records: dict["TaskInstanceKey", PodRecord]
    _by_pod: dict[tuple[str, str], "TaskInstanceKey"]
    _create_paused_until: float
    publish_failures: int

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
            message = api_message(exc)
            if exc.status == 429:
                self.publish_failures += 1
                pause = retry_after_seconds(exc) or DEFAULT_RETRY_AFTER_SECONDS
                self._create_paused_until = time.monotonic() + pause
                self.log.warning("pod creation throttled (429); pausing creation for %.1f s", pause)
                return "paused"
            if exc.status == 409 and self._is_our_pod(launch):
                return self._created(record, launch)  # an earlier attempt got through after all
            self.publish_failures += 1
            quota = exc.status == 403 and "exceeded quota" in message
            if exc.status in PERMANENT_CREATE_ERRORS and not quota:
                self._launch_failed(record, f"pod {record.name} could not be created: {message}")
                return "failed"
            return self._retry_launch(record, launch, message)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self.publish_failures += 1
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
