"""Warm pods for the KubernetesExecutor: pods started ahead of need, each taking one try, ever.

A mixin of :class:`~crossdock.executors.kubernetes_executor.KubernetesExecutor`, run in the
scheduler's thread like the rest of it. Off unless ``[kubernetes_executor] warm_pool_size``
is above 0; at 0 no warm pod is made and every try's pod is built and created as before.

Policy. A profile (:mod:`crossdock.kubernetes.warm_profile`) becomes *recent* when one of
its tries is launched; while it is recent (a try of it within ``warm_pod_idle_seconds``)
the executor keeps ``warm_pool_size`` warm pods of it (a used one is replaced when its try
is done, so the replacement's start does not compete with that try for the CPU), all
profiles together at most ``warm_pool_max``, and only while tries plus warm pods stay within the executor's
parallelism (warm pods use idle capacity; they never keep a try from being queued).

Assignment, exactly once. Before a queued launch is created cold, a ready warm pod of its
profile (Running, and it said so on its log: :mod:`~crossdock.executors.kubernetes_warm_readiness`), if any, is taken out of the pool - so it is never offered again - and
patched with the try's assignment at the resourceVersion last seen without one. Then:

* the patch lands: the pod is the try's pod (same record, same watcher, same adoption);
* 409 (the pod changed): it is read again; still unassigned and running → one more patch
  at the fresh version; assigned to this very try (an earlier patch got through) → the
  try's pod; anything else → the try stays queued for a cold pod;
* the outcome is unknown (connection lost): the pod is read again; ours → the try's pod;
  otherwise the pod is deleted and the try goes cold.

So a pod takes at most one try (the API server refuses a second patch at a stale
version, and the pod itself reads only the first), and a try gets at most one pod (the
launch leaves the queue only when a patch landed; it is created cold only when none did).

Lifecycle. A warm pod that fails, ends or vanishes before its assignment leaves the pool
(deleted if still there) and is replaced: no try is charged. One idle for
``warm_pod_idle_seconds`` is deleted; it also exits by itself a margin later, so one
whose scheduler died does not wait for ever. ``end``/``terminate`` delete unassigned
warm pods; a new scheduler deletes the unassigned warm pods of a dead one it adopts from
and adopts the assigned ones like any pod (they carry the try's key annotations).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import urllib3
from kubernetes.client.rest import ApiException

from crossdock.executors.kubernetes_pods import PodLaunch, PodRecord, api_message
from crossdock.executors.kubernetes_warm_readiness import ReadinessFollower
from crossdock.kubernetes.kube_watcher import DELETED, PodEvent
from crossdock.kubernetes.pod_generator import BASE_CONTAINER_NAME, annotations_to_key
from crossdock.kubernetes.warm_profile import (
    assignment_of, assignment_patch, profile_key, warm_pod_from,
)
from crossdock.runner.command import TASK_COMMAND_PREFIX

if TYPE_CHECKING:
    from kubernetes import client

    from crossdock.kubernetes.kube_config import KubeExecutorConfig
    from crossdock.models.taskinstancekey import TaskInstanceKey

#: A warm pod exits by itself this long after the executor would have deleted it.
SELF_EXIT_MARGIN_SECONDS = 60.0
#: Pause of warm pod creation after a failed create (the cold path has its own back-off).
CREATE_PAUSE_SECONDS = 2.0
#: Patches of one warm pod's assignment before the try goes cold (the first + one after a 409).
ASSIGN_ATTEMPTS = 2


@dataclass
class WarmPod:
    """An unassigned warm pod the executor keeps."""

    name: str
    namespace: str
    profile: str
    created_at: float
    resource_version: str | None = None
    running: bool = False
    #: Follows the pod's log until it says it can take a task (None in tests that build one by hand).
    readiness: ReadinessFollower | None = None

    @property
    def ready(self) -> bool:
        return self.running and self.readiness is not None and self.readiness.is_ready


@dataclass
class WarmProfile:
    """A recently used profile: the latest try's pod of it (the warm pods' prototype)."""

    prototype: dict[str, Any]
    last_used: float


class WarmPoolMixin:
    """Keeps and assigns warm pods (see the module docstring)."""

    core: "client.CoreV1Api | None"
    settings: "KubeExecutorConfig"
    template: dict[str, Any] | None
    parallelism: int
    running: set["TaskInstanceKey"]
    queued_tasks: dict
    _launches: deque[PodLaunch]
    _records: dict["TaskInstanceKey", PodRecord]
    _by_pod: dict[tuple[str, str], "TaskInstanceKey"]

    # -- state (made on first use, so the executor's constructor stays as it was) ----------
    @property
    def warm_enabled(self) -> bool:
        return self.settings.warm_pool_size > 0

    @property
    def _warm(self) -> dict[tuple[str, str], WarmPod]:
        if "_warm_pods" not in self.__dict__:
            self.__dict__["_warm_pods"] = {}
            self.__dict__["_warm_profiles"] = {}
            self.__dict__["_warm_paused_until"] = 0.0
            self.__dict__["warm_assignments"] = 0
            self.__dict__["_warm_tries"] = {}
        return self.__dict__["_warm_pods"]

    @property
    def _profiles(self) -> dict[str, WarmProfile]:
        self._warm  # noqa: B018 - makes the state
        return self.__dict__["_warm_profiles"]

    def warm_pods(self) -> list[WarmPod]:
        """The unassigned warm pods the executor keeps now."""
        return list(self._warm.values()) if self.warm_enabled else []

    def warm_profile_of(self, pod: dict[str, Any], command: list[str]) -> str | None:
        """The profile a try's pod may be served from warm; None when warm pods are off or it is not a task."""
        if not self.warm_enabled or tuple(command[:3]) != TASK_COMMAND_PREFIX:
            return None
        return profile_key(pod)

    # -- each sync ---------------------------------------------------------------------------
    def _warm_sync(self) -> None:
        """Assign queued launches to warm pods, then expire idle ones and fill the pool."""
        if not self.warm_enabled:
            return
        now = time.monotonic()
        self._assign_queued(now)
        self._expire_idle(now)
        self._fill_pool(now)

    def _assign_queued(self, now: float) -> None:
        kept: deque[PodLaunch] = deque()
        while self._launches:
            launch = self._launches.popleft()
            if launch.profile is None or launch.attempts or launch.key not in self._records:
                kept.append(launch)
                continue
            profile = self._profiles.get(launch.profile)
            if profile is None:
                self._profiles[launch.profile] = WarmProfile(prototype=launch.pod, last_used=now)
            else:
                profile.prototype, profile.last_used = launch.pod, now
            warm = self._take_ready(launch.profile)
            if warm is None or not self._assign(warm, launch):
                kept.append(launch)
        self._launches.extend(kept)

    def _take_ready(self, profile: str) -> WarmPod | None:
        limit = time.monotonic() - self.settings.warm_pod_idle_seconds
        for where, warm in self._warm.items():
            if warm.profile == profile and warm.ready and warm.resource_version and warm.created_at > limit:
                return self._forget_warm(where)  # taken: never offered to another try, whatever happens next
        return None

    def _assign(self, warm: WarmPod, launch: PodLaunch) -> bool:
        """Patch ``warm`` with ``launch``'s try; True when the pod is now that try's pod."""
        record = self._records[launch.key]
        command = record.command
        version = warm.resource_version
        for _attempt in range(ASSIGN_ATTEMPTS):
            body = assignment_patch(key=launch.key, command=command, resource_version=version)
            try:
                self.core.patch_namespaced_pod(warm.name, warm.namespace, body, _preload_content=False)
                return self._assigned(warm, record, launch)
            except ApiException as exc:
                if exc.status != 409:
                    self.log.warning("could not assign warm pod %s/%s to %s (%s); starting it cold", warm.namespace,
                                     warm.name, launch.key, api_message(exc))
                    self._delete_pod(warm.name, warm.namespace)
                    return False
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                self.log.warning("assigning warm pod %s/%s to %s: %s", warm.namespace, warm.name, launch.key, exc)
            current = self._read_pod(warm)
            if current is not None and annotations_to_key((current.get("metadata") or {}).get("annotations")) \
                    == launch.key and assignment_of(current) == list(command):
                return self._assigned(warm, record, launch)  # an earlier patch got through
            if (current is None or assignment_of(current) is not None
                    or (current.get("status") or {}).get("phase") != "Running"
                    or (current.get("metadata") or {}).get("deletionTimestamp")):
                break
            version = current["metadata"]["resourceVersion"]
        if current is None or assignment_of(current) is None:
            self._delete_pod(warm.name, warm.namespace)
        return False

    def _read_pod(self, warm: WarmPod) -> dict[str, Any] | None:
        try:
            return json.loads(self.core.read_namespaced_pod(warm.name, warm.namespace, _preload_content=False).data)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError):
            return None

    def _gone(self, warm: WarmPod) -> bool:
        try:
            self.core.read_namespaced_pod(warm.name, warm.namespace, _preload_content=False)
        except ApiException as exc:
            return exc.status == 404
        except (urllib3.exceptions.HTTPError, OSError):
            return False
        return False

    def _assigned(self, warm: WarmPod, record: PodRecord, launch: PodLaunch) -> bool:
        record.name, record.namespace = warm.name, warm.namespace
        self.__dict__["_warm_tries"][record.key] = warm.profile
        self.__dict__["warm_assignments"] = self.__dict__.get("warm_assignments", 0) + 1
        self._created(record, launch)
        self.log.debug("task %s runs in warm pod %s/%s", record.key, warm.namespace, warm.name)
        return True

    def _expire_idle(self, now: float) -> None:
        limit = now - self.settings.warm_pod_idle_seconds
        for where, warm in list(self._warm.items()):
            if warm.created_at <= limit:
                self._forget_warm(where)
                self.log.info("warm pod %s/%s idle for %.0f s; deleting it", warm.namespace, warm.name,
                              now - warm.created_at)
                self._delete_pod(warm.name, warm.namespace, grace_seconds=0)
        for key, profile in list(self._profiles.items()):
            if profile.last_used <= limit:
                del self._profiles[key]

    def _fill_pool(self, now: float) -> None:
        if now < self.__dict__.get("_warm_paused_until", 0.0):
            return
        counts: dict[str, int] = {}
        for warm in self._warm.values():
            counts[warm.profile] = counts.get(warm.profile, 0) + 1
        tries = self.__dict__["_warm_tries"]
        for key, profile_of_try in list(tries.items()):
            if key in self._records:  # its try still runs: its replacement starts when the pod is done
                counts[profile_of_try] = counts.get(profile_of_try, 0) + 1
            else:
                del tries[key]
        budget = self.settings.warm_pool_max - len(self._warm)
        if self.parallelism:
            budget = min(budget, self.parallelism - len(self.running) - len(self._warm))
        budget = min(budget, self.settings.worker_pods_creation_batch_size)
        for key, profile in self._profiles.items():
            while budget > 0 and counts.get(key, 0) < self.settings.warm_pool_size:
                if not self._create_warm(key, profile, now):
                    return
                counts[key] = counts.get(key, 0) + 1
                budget -= 1

    def _create_warm(self, key: str, profile: WarmProfile, now: float) -> bool:
        base = next((c for c in (self.template or {}).get("spec", {}).get("containers", [])
                     if c.get("name") == BASE_CONTAINER_NAME), {})
        pod = warm_pod_from(profile.prototype, worker_label=self.worker_label, entrypoint=base.get("command"),
                            idle_seconds=self.settings.warm_pod_idle_seconds + SELF_EXIT_MARGIN_SECONDS,
                            service_account=self.settings.warm_pod_service_account)
        meta = pod["metadata"]
        try:
            response = self.core.create_namespaced_pod(meta["namespace"], pod, _preload_content=False)
            created = json.loads(response.data)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            reason = api_message(exc) if isinstance(exc, ApiException) else str(exc)
            self.log.warning("could not create a warm pod for profile %s: %s", key, reason)
            self.__dict__["_warm_paused_until"] = now + CREATE_PAUSE_SECONDS
            return False
        self._warm[(meta["namespace"], meta["name"])] = WarmPod(
            name=meta["name"], namespace=meta["namespace"], profile=key, created_at=now,
            resource_version=(created.get("metadata") or {}).get("resourceVersion"),
            running=(created.get("status") or {}).get("phase") == "Running")
        self._follow_once_running(self._warm[(meta["namespace"], meta["name"])])
        return True

    def _follow_once_running(self, warm: WarmPod) -> None:
        """Start following a warm pod's log for its ready line once it runs (before, it has no log)."""
        if warm.running and warm.readiness is None:
            warm.readiness = ReadinessFollower(self.core, name=warm.name, namespace=warm.namespace,
                                               give_up_after=self.settings.warm_pod_idle_seconds)

    def _forget_warm(self, where: tuple[str, str]) -> WarmPod:
        """Take a warm pod out of the pool and stop following its log."""
        warm = self._warm.pop(where)
        if warm.readiness is not None:
            warm.readiness.cancel()
        return warm

    # -- what the watchers saw -------------------------------------------------------------------
    def _apply_pod_event(self, event: PodEvent) -> None:
        meta = (event.pod or {}).get("metadata") or {}
        where = (meta.get("namespace", ""), meta.get("name", ""))
        warm = self._warm.get(where) if self.warm_enabled else None
        if warm is None:
            super()._apply_pod_event(event)  # type: ignore[misc]
            return
        phase = ((event.pod or {}).get("status") or {}).get("phase")
        if event.kind == DELETED or phase in ("Succeeded", "Failed") or meta.get("deletionTimestamp") \
                or assignment_of(event.pod or {}) is not None:
            self._forget_warm(where)
            self.log.info("warm pod %s/%s ended before it was assigned (%s); it will be replaced", where[0], where[1],
                          "deleted" if event.kind == DELETED else phase)
            if event.kind != DELETED and assignment_of(event.pod or {}) is None:
                self._delete_pod(where[1], where[0])
            return
        warm.resource_version = meta.get("resourceVersion") or warm.resource_version
        warm.running = phase == "Running"
        self._follow_once_running(warm)

    def _check_vanished(self, event: PodEvent) -> None:
        present = event.present or frozenset()
        for where, warm in list(self._warm.items()) if self.warm_enabled else []:
            if event.namespace in (None, where[0]) and where not in present and self._gone(warm):
                self._forget_warm(where)  # vanished while unwatched (one created after the list is still there)
        super()._check_vanished(event)  # type: ignore[misc]

    def _drop_warm_pods(self) -> None:
        """Delete every unassigned warm pod (the executor stops; a next one would not use them)."""
        if not self.warm_enabled:
            return
        for where, warm in list(self._warm.items()):
            self._forget_warm(where)
            self._delete_pod(warm.name, warm.namespace, grace_seconds=0)
        self._profiles.clear()
