"""Following worker pods: list, then watch from the list's resourceVersion, and what a pod's status means.

:class:`KubeWatcher` is a thread per watched namespace (or one for all namespaces). It
never loses an event a client can get back: after a network error it watches again
from the last resourceVersion it saw; when the server answers 410 Gone (history
compacted) it lists again and hands the executor the full set of pods it found
(``RELISTED``), so a pod that vanished while nobody was watching is noticed too.

:func:`interpret_pod` turns one pod's status into what the task try's state should be.
It is a pure function of the pod dict, so the rules are tested without a cluster.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from crossdock.kubernetes.pod_generator import BASE_CONTAINER_NAME

log = logging.getLogger(__name__)

#: Server-side lifetime of one watch request; the watcher then continues from where it was.
WATCH_TIMEOUT_SECONDS = 300
#: Client-side (connect, read) timeouts of a watch: a dead connection is noticed.
WATCH_CONNECT_TIMEOUT = 10
RETRY_MIN_SECONDS = 0.05
RETRY_MAX_SECONDS = 5.0
LIST_PAGE_SIZE = 500

ADDED, MODIFIED, DELETED, RELISTED = "ADDED", "MODIFIED", "DELETED", "RELISTED"

RUNNING, SUCCESS, FAILED = "running", "success", "failed"
#: Pod-level reasons that mean the task never got to start (the node, not the task, failed it).
NOT_STARTED_POD_REASONS = frozenset({"Evicted", "Preempting", "NodeLost", "UnexpectedAdmissionError",
                                     "OutOfcpu", "OutOfmemory", "OutOfpods", "NodeAffinity", "Shutdown",
                                     "Terminated"})


@dataclass(frozen=True)
class PodEvent:
    """One thing the watcher saw.

    ``kind`` is ADDED / MODIFIED / DELETED with ``pod`` set, or RELISTED with
    ``present`` = every (namespace, name) the fresh list returned in ``namespace``
    (None: all namespaces).
    """

    kind: str
    pod: dict[str, Any] | None = None
    namespace: str | None = None
    present: frozenset[tuple[str, str]] | None = None


@dataclass(frozen=True)
class PodOutcome:
    """What a pod's status says about its try: ``state`` is running / success / failed or None (no news).

    ``reason`` is a readable line for a failure; ``before_start`` is True when the pod
    failed before the task could have started (it may be relaunched without spending a
    retry); ``fatal_pending`` is True for a Pending pod that will never start.
    """

    state: str | None
    reason: str | None = None
    before_start: bool = False
    fatal_pending: bool = False
    exit_code: int | None = None


def _base_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == BASE_CONTAINER_NAME:
            return status
    return statuses[0] if statuses else {}


def _terminated_text(name: str, terminated: dict[str, Any]) -> str:
    reason = terminated.get("reason") or "terminated"
    text = f"pod {name}: container {BASE_CONTAINER_NAME} {reason}, exit code {terminated.get('exitCode')}"
    if terminated.get("message"):
        text += f": {str(terminated['message']).strip()}"
    return text


def interpret_pod(pod: dict[str, Any], *, fatal_reasons: Iterable[str] = ()) -> PodOutcome:
    """The try state a pod's status stands for (see :class:`PodOutcome`)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    name = meta.get("name", "?")
    phase = status.get("phase")
    base = _base_status(pod)
    state = base.get("state") or {}
    waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
    last_terminated = (base.get("lastState") or {}).get("terminated") or {}
    if phase == "Succeeded":
        return PodOutcome(SUCCESS, exit_code=terminated.get("exitCode", 0))
    if phase == "Failed":
        if terminated:
            return PodOutcome(FAILED, _terminated_text(name, terminated), exit_code=terminated.get("exitCode"))
        pod_reason = status.get("reason")
        text = f"pod {name} failed"
        if pod_reason:
            text += f": {pod_reason}"
        if status.get("message"):
            text += f": {str(status['message']).strip()}"
        if waiting.get("reason"):
            text += f" (container {BASE_CONTAINER_NAME} {waiting['reason']}"
            text += f": {waiting['message']})" if waiting.get("message") else ")"
        never_ran = not last_terminated and not state.get("running")
        fatal = waiting.get("reason") in set(fatal_reasons)
        before = never_ran and not fatal and (pod_reason in NOT_STARTED_POD_REASONS or not waiting.get("reason"))
        return PodOutcome(FAILED, text, before_start=before)
    if meta.get("deletionTimestamp") and phase in ("Running", "Pending"):
        return PodOutcome(FAILED, f"pod {name} was deleted while {phase.lower()} (deletionTimestamp "
                                  f"{meta['deletionTimestamp']})")
    if phase == "Pending":
        if waiting.get("reason") in set(fatal_reasons):
            text = f"pod {name} cannot start: container {BASE_CONTAINER_NAME} {waiting['reason']}"
            if waiting.get("message"):
                text += f": {waiting['message']}"
            return PodOutcome(FAILED, text, fatal_pending=True)
        return PodOutcome(None)
    if phase == "Running":
        return PodOutcome(RUNNING)
    return PodOutcome(None)


class KubeWatcher(threading.Thread):
    """Lists and watches the pods matching ``label_selector`` and hands every event to ``sink``.

    :param core: the ``CoreV1Api`` to call.
    :param namespace: the namespace to follow; None for all namespaces.
    :param label_selector: which pods (the executor selects its own scheduler job's pods).
    :param sink: called from this thread with each :class:`PodEvent`; must be quick.
    """

    def __init__(self, *, core: client.CoreV1Api, namespace: str | None, label_selector: str,
                 sink: Callable[[PodEvent], None], watch_timeout: int = WATCH_TIMEOUT_SECONDS):
        super().__init__(name=f"pod-watcher-{namespace or 'all'}", daemon=True)
        self.core = core
        self.namespace = namespace
        self.label_selector = label_selector
        self.sink = sink
        self.watch_timeout = watch_timeout
        self.resource_version: str | None = None
        #: Lists done (the first one included): a relist after 410 shows up here.
        self.lists = 0
        #: Watch connections that ended in an error (not a server-side timeout).
        self.reconnects = 0
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None
        self.ready = threading.Event()

    # -- control ---------------------------------------------------------------------------
    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        self.interrupt()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def interrupt(self) -> None:
        """Cut the current watch connection (as a network failure would); the watcher resumes."""
        with self._lock:
            response = self._response
        if response is None:
            return
        try:
            response.shutdown() if hasattr(response, "shutdown") else response.close()
        except Exception:  # noqa: BLE001 - closing a socket another thread reads from
            pass

    # -- the loop --------------------------------------------------------------------------
    def _list_args(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if self.namespace:
            return self.core.list_namespaced_pod, (self.namespace,)
        return self.core.list_pod_for_all_namespaces, ()

    def _list(self) -> None:
        func, args = self._list_args()
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"label_selector": self.label_selector, "limit": LIST_PAGE_SIZE}
            if token:
                kwargs["_continue"] = token
            response = func(*args, _preload_content=False, **kwargs)
            listing = json.loads(response.data)
            items.extend(listing.get("items") or [])
            token = (listing.get("metadata") or {}).get("continue")
            if not token:
                break
        self.resource_version = listing["metadata"]["resourceVersion"]
        self.lists += 1
        present = set()
        for pod in items:
            meta = pod.get("metadata") or {}
            present.add((meta.get("namespace", ""), meta.get("name", "")))
            self.sink(PodEvent(ADDED, pod=dict(pod, kind="Pod", apiVersion="v1")))
        self.sink(PodEvent(RELISTED, namespace=self.namespace, present=frozenset(present)))

    def _watch(self) -> None:
        func, args = self._list_args()
        response = func(*args, label_selector=self.label_selector, watch=True,
                        resource_version=self.resource_version, timeout_seconds=self.watch_timeout,
                        allow_watch_bookmarks=True, _preload_content=False,
                        _request_timeout=(WATCH_CONNECT_TIMEOUT, self.watch_timeout + 30))
        with self._lock:
            if self._stop_event.is_set():  # stopped while connecting: nobody would cut this one
                response.close()
                return
            self._response = response
        try:
            for line in iter_resp_lines(response):
                if self._stop_event.is_set():
                    return
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        log.info("pod watch %s: history compacted (410 Gone); listing again", self.name)
                        self.resource_version = None
                        return
                    raise ApiException(status=obj.get("code") or 500, reason=obj.get("message"))
                self.resource_version = (obj.get("metadata") or {}).get("resourceVersion") or self.resource_version
                if kind in (ADDED, MODIFIED, DELETED):
                    self.sink(PodEvent(kind, pod=obj))
        finally:
            with self._lock:
                self._response = None
            try:
                response.release_conn()
            except Exception:  # noqa: BLE001
                pass

    def run(self) -> None:
        delay = RETRY_MIN_SECONDS
        while not self._stop_event.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                    self.ready.set()
                self._watch()
                delay = RETRY_MIN_SECONDS
            except ApiException as exc:
                if self._stop_event.is_set():
                    return
                if exc.status == 410:
                    self.resource_version = None
                    continue
                self.reconnects += 1
                log.warning("pod watch %s failed: %s %s; retrying", self.name, exc.status, exc.reason)
                self._stop_event.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if self._stop_event.is_set():
                    return
                self.reconnects += 1
                log.info("pod watch %s interrupted (%s); resuming from %s", self.name, exc,
                         self.resource_version)
                self._stop_event.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad event
                if self._stop_event.is_set():
                    return
                self.reconnects += 1
                log.exception("pod watch %s: unexpected error; resuming", self.name)
                self._stop_event.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
