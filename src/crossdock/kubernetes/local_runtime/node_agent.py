"""The node agent ("kubelet"): binds pending pods to its node and runs them as local processes.

It speaks to the API only through the official ``kubernetes`` client, so it runs unchanged
against the local pods API and a real kube-apiserver. Two list+watch loops drive it: one
over unbound pods (it schedules them onto itself) and one over pods bound to its node (it
runs them and reports Pending → Running → Succeeded/Failed). Each running pod has a
worker thread; each pod's process has a shim that outlives the agent, so a restarted
agent reports outcomes that arrived while it was away.
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import platform
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from crossdock.kubernetes.kube_client import retry_after_seconds
from crossdock.kubernetes.local_runtime.container import Container, ShimPool, read_json, write_json
from crossdock.kubernetes.local_runtime.launch import (
    ContainerConfigError, ImagePullError, build_plan, decode_secret_data, pick_container,
)
from crossdock.kubernetes.local_runtime.log_server import KubeletEndpoint
from crossdock.kubernetes.local_runtime.settings import DEFAULT_NODE_NAME
from crossdock.kubernetes.local_runtime.store import now_rfc3339
from crossdock.kubernetes.local_runtime.tls import ensure_self_signed

log = logging.getLogger(__name__)

NODE_IP = "127.0.0.1"
#: Server-side timeout of each watch request; the loop reconnects from the last version.
WATCH_TIMEOUT_SECONDS = 300
#: (connect, read) seconds for one ordinary API call: a stalled connection is retried
#: instead of holding a pod's worker forever.
CALL_TIMEOUT_SECONDS = (10, 60)
RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
#: Back-off before restarting a crashed container (restartPolicy Always/OnFailure), doubling.
CRASH_BACKOFF_SECONDS = 10.0
CRASH_BACKOFF_MAX_SECONDS = 300.0
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
TERMINAL_PHASES = ("Succeeded", "Failed")
#: How often a worker wakes while its process runs, to notice deadline and deletion.
WORKER_TICK_SECONDS = 0.5


class _Stopped(Exception):
    pass


class NodeAgent:
    """A kubelet for one node, working through any API server.

    :param api_client: a configured ``kubernetes.client.ApiClient``; or give ``kubeconfig``.
    :param node_name: the Node it registers and binds pods to.
    :param state_dir: where pod folders, logs and outcomes live (survives restarts).
    :param namespace: watch only this namespace (``None``: all namespaces).
    :param reject_images: fnmatch patterns of images treated as unpullable (ErrImagePull).
    :param schedule: also bind unbound pods to this node (act as the scheduler).
    """

    def __init__(self, *, api_client: client.ApiClient | None = None, kubeconfig: str | None = None,
                 node_name: str = DEFAULT_NODE_NAME, state_dir: Path | str,
                 namespace: str | None = None, reject_images: list[str] | None = None,
                 schedule: bool = True, endpoint_host: str = NODE_IP, endpoint_port: int = 0) -> None:
        if api_client is None:
            api_client = config.new_client_from_config(config_file=kubeconfig)
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.node_name = node_name
        self.state_dir = Path(state_dir)
        self.pods_dir = self.state_dir / "pods"
        self.namespace = namespace
        self.reject_images = list(reject_images or [])
        self.schedule = schedule
        self.api_calls = 0
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._hold = threading.Event()
        self._lock = threading.RLock()
        self._workers: dict[str, PodWorker] = {}
        self._held: dict[str, dict[str, Any]] = {}
        self._unbound: dict[str, dict[str, Any]] = {}
        self._index: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid
        self._threads: list[threading.Thread] = []
        self._responses: set[Any] = set()
        self._endpoint_host, self._endpoint_port = endpoint_host, endpoint_port
        self.endpoint: KubeletEndpoint | None = None
        self.shims = ShimPool()
        self._count_requests()

    # -- plumbing ---------------------------------------------------------------------------
    def _count_requests(self) -> None:
        """Count every API request this agent makes (the benchmark reports requests per pod)."""
        original = self.api_client.call_api

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._count_lock:
                self.api_calls += 1
            return original(*args, **kwargs)

        self.api_client.call_api = counted  # type: ignore[method-assign]

    def _call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call returning parsed JSON, retried on 429/5xx/connection errors until stopped."""
        delay = RETRY_MIN_SECONDS
        while True:
            if self._stop.is_set():
                raise _Stopped()
            try:
                kwargs.setdefault("_request_timeout", CALL_TIMEOUT_SECONDS)
                response = func(*args, _preload_content=False, **kwargs)
                data = response.data
                return json.loads(data) if data else {}
            except ApiException as exc:
                if exc.status not in (429, 500, 502, 503, 504):
                    raise
                wait = retry_after_seconds(exc) or delay
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                log.debug("node agent: API unreachable (%s); retrying", exc)
                wait = delay
            if self._stop.wait(wait):
                raise _Stopped()
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "NodeAgent":
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.shims.fill()
        cert, key = ensure_self_signed(self.state_dir / "tls")
        self.endpoint = KubeletEndpoint(source=self, host=self._endpoint_host, port=self._endpoint_port,
                                        cert=cert, key=key).start()
        self._register_node()
        loops = [("kubelet", f"spec.nodeName={self.node_name}", self._on_own_pod, self._relist_own)]
        if self.schedule:
            loops.append(("binder", "spec.nodeName=", self._on_unbound_pod, self._relist_unbound))
        for name, selector, on_event, on_relist in loops:
            thread = threading.Thread(target=self._list_watch, args=(selector, on_event, on_relist),
                                      name=f"agent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, *, kill_pods: bool = True, timeout: float = 10.0) -> None:
        """Stop watching; with ``kill_pods`` also stop every pod process (else they run on)."""
        with self._lock:  # a watch registering its response from now on sees the stop flag
            if self._stop.is_set():
                return
            self._stop.set()
            responses, workers = list(self._responses), list(self._workers.values())
        for response in responses:
            try:
                response.shutdown() if hasattr(response, "shutdown") else response.close()
            except Exception:  # noqa: BLE001 - closing a socket another thread reads
                pass
        if kill_pods:
            for worker in workers:
                worker.container.stop(0.5)
        for thread in self._threads:
            thread.join(timeout)
        for worker in workers:
            worker.join(timeout)
        if self.endpoint is not None:
            self.endpoint.stop()
        self.shims.close()

    def _register_node(self) -> None:
        port = self.endpoint.port if self.endpoint else 0
        memory_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_kib}Ki", "pods": "110"}
        now = now_rfc3339()
        status = {
            # Only an IP: API servers try a Hostname address first, and the node name resolves nowhere.
            "addresses": [{"type": "InternalIP", "address": NODE_IP}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "capacity": capacity, "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "crossdock node agent is posting ready status",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": platform.release(),
                         "osImage": platform.platform(), "containerRuntimeVersion": "crossdock-process://1",
                         "kubeletVersion": "v1.20.2-crossdock", "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": "amd64"},
        }
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node_name, "labels": {"kubernetes.io/hostname": self.node_name,
                                                                  "kubernetes.io/os": "linux"}}}
        try:
            self._call(self.core.create_node, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self._call(self.core.patch_node_status, self.node_name, {"status": status},
                   _content_type="application/merge-patch+json")

    # -- fault hooks -------------------------------------------------------------------------
    def hold_pending(self, hold: bool) -> None:
        """While held, pods are neither bound nor started: they stay Pending."""
        if hold:
            self._hold.set()
            return
        with self._lock:
            # Cleared under the lock that _on_own_pod holds while it checks the flag and
            # parks a pod: a pod parked at the same moment is in the list taken here.
            self._hold.clear()
            held, unbound = list(self._held.values()), list(self._unbound.values())
            self._held.clear()
        for pod in unbound:
            self._on_unbound_pod("MODIFIED", pod)
        for pod in held:
            self._on_own_pod("MODIFIED", pod)

    def kill_pod(self, *, namespace: str, name: str, signal_number: int = signal.SIGKILL) -> bool:
        """Signal a pod's process as if it crashed or was killed from outside."""
        with self._lock:
            uid = self._index.get((namespace, name))
            worker = self._workers.get(uid) if uid else None
        return bool(worker and worker.container.signal(signal_number))

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks and operators (served at ``/_crossdock/stats``)."""
        with self._lock:
            running = len(self._workers)
        return {"node": self.node_name, "apiCalls": self.api_calls, "podsRunning": running}

    # -- watching ----------------------------------------------------------------------------
    def _list_fn(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if self.namespace:
            return self.core.list_namespaced_pod, (self.namespace,)
        return self.core.list_pod_for_all_namespaces, ()

    def _list_watch(self, selector: str, on_event: Callable[[str, dict[str, Any]], None],
                    on_relist: Callable[[list[dict[str, Any]]], None]) -> None:
        func, args = self._list_fn()
        rv: str | None = None
        delay = RETRY_MIN_SECONDS
        while not self._stop.is_set():
            try:
                if rv is None:
                    listing = self._call(func, *args, field_selector=selector)
                    on_relist([dict(item, kind="Pod", apiVersion="v1") for item in listing.get("items", [])])
                    rv = listing["metadata"]["resourceVersion"]  # only once every pod was handed over
                response = func(*args, field_selector=selector, watch=True, resource_version=rv,
                                timeout_seconds=WATCH_TIMEOUT_SECONDS, allow_watch_bookmarks=True,
                                _preload_content=False, _request_timeout=(10, WATCH_TIMEOUT_SECONDS + 30))
                with self._lock:
                    if self._stop.is_set():
                        response.close()
                        return
                    self._responses.add(response)
                try:
                    for line in iter_resp_lines(response):
                        if not line:
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            if obj.get("code") == 410:
                                rv = None  # compacted away: relist
                            break
                        if event.get("type") != "BOOKMARK":
                            try:
                                on_event(event["type"], obj)
                            except Exception:  # noqa: BLE001 - e.g. no thread could start
                                # Resuming past this event would lose it until the pod
                                # changes again; a relist hands every pod over anew.
                                log.exception("node agent: handling %s of pod %s failed; relisting",
                                              event["type"], (obj.get("metadata") or {}).get("name"))
                                rv = None
                                self._stop.wait(delay)
                                delay = min(delay * 2, RETRY_MAX_SECONDS)
                                break
                        rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                        delay = RETRY_MIN_SECONDS
                finally:
                    with self._lock:
                        self._responses.discard(response)
                    response.release_conn()
            except _Stopped:
                return
            except ApiException as exc:
                if exc.status == 410:
                    rv = None
                    continue
                log.warning("node agent: watch %s failed: %s %s", selector, exc.status, exc.reason)
                self._stop.wait(retry_after_seconds(exc) or delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            except Exception as exc:  # noqa: BLE001 - connection drops, server restarts
                if self._stop.is_set():
                    return
                log.debug("node agent: watch %s interrupted: %s", selector, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    # -- scheduling (binder) -----------------------------------------------------------------
    def _relist_unbound(self, pods: list[dict[str, Any]]) -> None:
        with self._lock:
            self._unbound.clear()
        for pod in pods:
            self._on_unbound_pod("ADDED", pod)

    def _on_unbound_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if event_type == "DELETED" or meta.get("deletionTimestamp") or (pod.get("spec") or {}).get("nodeName"):
            with self._lock:
                self._unbound.pop(uid, None)
            return
        if (pod.get("status") or {}).get("phase", "Pending") != "Pending":
            return
        with self._lock:
            self._unbound[uid] = pod
        if self._hold.is_set():
            return
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"]},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name}}
        try:
            self._call(self.core.create_namespaced_pod_binding, meta["name"], meta["namespace"], binding)
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("node agent: binding %s/%s failed: %s", meta["namespace"], meta["name"], exc.reason)
        except _Stopped:
            return
        with self._lock:
            self._unbound.pop(uid, None)

    # -- running (kubelet) -------------------------------------------------------------------
    def _relist_own(self, pods: list[dict[str, Any]]) -> None:
        seen = {pod["metadata"]["uid"] for pod in pods}
        with self._lock:
            gone = [worker for uid, worker in self._workers.items() if uid not in seen]
        for worker in gone:
            worker.pod_deleted()
        for pod in pods:
            self._on_own_pod("ADDED", pod)
        self._collect_garbage(seen)

    def _collect_garbage(self, live_uids: set[str]) -> None:
        """Folders of pods the API no longer has: stop what still runs there, then remove."""
        if not self.pods_dir.exists():
            return
        for folder in self.pods_dir.iterdir():
            if folder.name in live_uids:
                continue
            with self._lock:
                if folder.name in self._workers:
                    continue
            meta = read_json(folder / "meta.json") or {}
            if meta.get("node") not in (None, self.node_name):
                continue
            if self.namespace and meta.get("namespace") not in (None, self.namespace):
                continue
            container = Container(folder, container_name=meta.get("container", "base"))
            if container.shim_alive():
                container.stop(0)
            container.remove()

    def _on_own_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self._lock:
            worker = self._workers.get(uid)
            if event_type == "DELETED":
                self._held.pop(uid, None)
                if self._index.get((meta["namespace"], meta["name"])) == uid:
                    del self._index[(meta["namespace"], meta["name"])]
            else:
                self._index[(meta["namespace"], meta["name"])] = uid
        if event_type == "DELETED":
            if worker is not None:
                worker.pod_deleted()
            else:
                Container(self.pods_dir / uid, container_name="base").remove()
            return
        if worker is not None:
            worker.update(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in TERMINAL_PHASES:
            return
        if not (self.pods_dir / uid).exists():
            with self._lock:
                if self._hold.is_set():
                    self._held[uid] = pod
                    return
        with self._lock:
            if uid in self._workers:
                return
            worker = PodWorker(self, pod)
            self._workers[uid] = worker
        worker.start()

    def _worker_done(self, worker: "PodWorker") -> None:
        with self._lock:
            if self._workers.get(worker.uid) is worker:
                del self._workers[worker.uid]

    # -- logs (LogSource) --------------------------------------------------------------------
    def find_log(self, namespace: str, name: str, container: str
                 ) -> tuple[Path | None, str | None, Callable[[], bool]]:
        with self._lock:
            uid = self._index.get((namespace, name))
        if uid is None:
            return None, None, lambda: True
        box = Container(self.pods_dir / uid, container_name=container)
        if box.started() is None and box.result() is None:
            return None, self._waiting_reason(uid), lambda: True
        return box.log_path, None, lambda: box.result() is not None

    def _waiting_reason(self, uid: str) -> str:
        with self._lock:
            worker = self._workers.get(uid)
        return worker.waiting_reason if worker is not None else "ContainerCreating"

    def read_env_source(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        reader = self.core.read_namespaced_config_map if kind == "ConfigMap" else self.core.read_namespaced_secret
        try:
            obj = self._call(reader, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ContainerConfigError(f"cannot read {kind.lower()} {namespace}/{name}: {exc.reason}") from None
        if kind == "Secret":
            data = decode_secret_data(obj.get("data"))
            data.update(obj.get("stringData") or {})
            return data
        return dict(obj.get("data") or {})


class PodWorker(threading.Thread):
    """Runs one pod to its end on this node and keeps the API server told."""

    def __init__(self, agent: NodeAgent, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}-{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid = meta["uid"]
        self.namespace, self.pod_name = meta["namespace"], meta["name"]
        self.spec_container = pick_container(pod)
        self.container = Container(agent.pods_dir / self.uid, container_name=self.spec_container["name"],
                                   pool=agent.shims)
        self.waiting_reason = "ContainerCreating"
        self._wake = threading.Event()
        self._deleted = False
        self.restart_count = 0
        self.start_time: str | None = (pod.get("status") or {}).get("startTime")

    # -- events from the agent ----------------------------------------------------------------
    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self._wake.set()

    def pod_deleted(self) -> None:
        self._deleted = True
        self._wake.set()

    @property
    def deletion_requested(self) -> bool:
        return self._deleted or bool(self.pod["metadata"].get("deletionTimestamp"))

    # -- status reporting ---------------------------------------------------------------------
    def _patch_status(self, status: dict[str, Any]) -> bool:
        """Send a status patch; False when the pod is gone (nothing left to report to)."""
        if self._deleted:
            return False
        try:
            self.agent._call(self.agent.core.patch_namespaced_pod_status, self.pod_name, self.namespace,
                             {"metadata": {"uid": self.uid}, "status": status})
            return True
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise

    def _base_status(self, phase: str, *, ready: bool) -> dict[str, Any]:
        now = now_rfc3339()
        flag = "True" if ready else "False"
        return {
            "phase": phase, "hostIP": NODE_IP, "podIP": NODE_IP, "podIPs": [{"ip": NODE_IP}],
            "startTime": self.start_time,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": now},
                {"type": "Ready", "status": flag, "lastProbeTime": None, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastProbeTime": None, "lastTransitionTime": now},
            ],
        }

    def _container_status(self, state: dict[str, Any], *, ready: bool = False,
                          last_state: dict[str, Any] | None = None) -> dict[str, Any]:
        running = "running" in state
        return {
            "name": self.spec_container["name"], "state": state, "lastState": last_state or {},
            "ready": ready, "restartCount": self.restart_count, "image": self.spec_container.get("image", ""),
            "imageID": "", "containerID": f"crossdock://{self.uid}-{self.restart_count}", "started": running,
        }

    def _report_waiting(self, reason: str, message: str | None = None) -> None:
        self.waiting_reason = reason
        status = self._base_status("Pending", ready=False)
        waiting = {"reason": reason} | ({"message": message} if message else {})
        status["containerStatuses"] = [self._container_status({"waiting": waiting})]
        self._patch_status(status)

    def _report_running(self, started_at: str) -> None:
        status = self._base_status("Running", ready=True)
        status["containerStatuses"] = [self._container_status({"running": {"startedAt": started_at}}, ready=True)]
        self._patch_status(status)

    def _terminated_state(self, result: dict[str, Any]) -> dict[str, Any]:
        state = {"exitCode": int(result["exitCode"]), "reason": result["reason"],
                 "startedAt": result.get("startedAt"), "finishedAt": result.get("finishedAt") or now_rfc3339(),
                 "containerID": f"crossdock://{self.uid}-{self.restart_count}"}
        if result.get("message"):
            state["message"] = result["message"]
        if result.get("signal"):
            state["signal"] = result["signal"]
        return state

    def _report_terminal(self, result: dict[str, Any], *, phase: str | None = None, reason: str | None = None,
                         message: str | None = None) -> None:
        if phase is None:
            phase = "Succeeded" if int(result["exitCode"]) == 0 else "Failed"
        status = self._base_status(phase, ready=False)
        status["containerStatuses"] = [self._container_status({"terminated": self._terminated_state(result)})]
        if reason:
            status["reason"] = reason
            status["message"] = message or reason
        if self._patch_status(status) or self._deleted:
            self.container.mark_reported(status)

    def _report_config_error(self, message: str) -> None:
        """The process cannot ever start here; fail the pod rather than leave it Pending forever."""
        self.waiting_reason = ContainerConfigError.reason
        status = self._base_status("Failed", ready=False)
        status["reason"] = ContainerConfigError.reason
        status["message"] = message
        status["containerStatuses"] = [self._container_status(
            {"waiting": {"reason": ContainerConfigError.reason, "message": message}})]
        if self._patch_status(status):
            self.container.mark_reported(status)

    # -- the pod's life -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except _Stopped:
            pass
        except Exception:  # noqa: BLE001 - one bad pod must not take the agent down
            log.exception("node agent: pod %s/%s failed unexpectedly", self.namespace, self.pod_name)
        finally:
            self.agent._worker_done(self)
            if self._deleted:
                self.container.remove()

    def _deadline_at(self) -> float | None:
        seconds = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if not seconds or not self.start_time:
            return None
        started = calendar.timegm(time.strptime(self.start_time, "%Y-%m-%dT%H:%M:%SZ"))
        return started + int(seconds)

    def _grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(grace)

    def _run(self) -> None:
        box = self.container
        box.dir.mkdir(parents=True, exist_ok=True)
        write_json(box.dir / "meta.json", {"namespace": self.namespace, "name": self.pod_name, "uid": self.uid,
                                           "container": self.spec_container["name"], "node": self.agent.node_name})
        if box.reported() is not None:
            self._finish_reported()
            return
        adopting = box.plan_exists()  # we ran this pod before a restart: adopt its process or outcome
        if self.start_time is None:
            self.start_time = now_rfc3339()
        while True:
            if adopting:
                adopting = False
                started = box.started() or {}
                result = box.result()
                if result is None and not box.shim_alive():
                    result = box.wait(0)
                if result is None and started and (self.pod.get("status") or {}).get("phase") != "Running":
                    self._report_running(started["startedAt"])
                if not self._supervise(result):
                    return
                continue
            if self.deletion_requested:
                self._finish_deleted(None)
                return
            try:
                plan = build_plan(self.pod, self.spec_container, reject_patterns=self.agent.reject_images,
                                  read_source=self.agent.read_env_source, log_path=str(box.log_path))
            except ImagePullError as exc:
                self._report_waiting(ImagePullError.reason, str(exc))
                self._wait_pending_forever()
                return
            except ContainerConfigError as exc:
                self._report_config_error(str(exc))
                return
            box.start(plan)
            started = box.wait_started()
            if started is not None:
                self._report_running(started["startedAt"])
            if not self._supervise(None):
                return

    def _wait_pending_forever(self) -> None:
        """ErrImagePull: stay Pending until the pod is deleted or its deadline passes."""
        while not self.agent._stop.is_set():
            if self.deletion_requested:
                self._finish_deleted(None)
                return
            deadline = self._deadline_at()
            if deadline is not None and time.time() >= deadline:
                status = self._base_status("Failed", ready=False)
                status.update(reason="DeadlineExceeded", message=DEADLINE_MESSAGE)
                status["containerStatuses"] = [self._container_status({"waiting": {"reason": self.waiting_reason}})]
                self._patch_status(status)
                return
            self._wake.wait(WORKER_TICK_SECONDS)
            self._wake.clear()

    def _supervise(self, result: dict[str, Any] | None) -> bool:
        """Wait for the process to end and report it; True if the container should restart."""
        box = self.container
        deadline_hit = False
        while result is None:
            if self.agent._stop.is_set():
                raise _Stopped()
            if self.deletion_requested:
                result = box.stop(self._grace())
                self._finish_deleted(result)
                return False
            deadline = self._deadline_at()
            if deadline is not None and time.time() >= deadline:
                deadline_hit = True
                result = box.stop(self._grace())
                break
            timeout = WORKER_TICK_SECONDS if deadline is None else max(0.0, min(WORKER_TICK_SECONDS,
                                                                                deadline - time.time()))
            result = box.wait(timeout)
            if result is None and self._wake.is_set():
                self._wake.clear()
        if result is None:
            result = box.wait(0) or box._lost()
        if deadline_hit:
            self._report_terminal(result, phase="Failed", reason="DeadlineExceeded", message=DEADLINE_MESSAGE)
            return False
        if self.deletion_requested:
            self._finish_deleted(result)
            return False
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        failed = int(result["exitCode"]) != 0
        if policy == "Always" or (policy == "OnFailure" and failed):
            return self._crash_loop(result)
        self._report_terminal(result)
        return False

    def _crash_loop(self, result: dict[str, Any]) -> bool:
        """Report the exit, back off, and ask for a restart, as a kubelet does."""
        backoff = min(CRASH_BACKOFF_SECONDS * (2 ** self.restart_count), CRASH_BACKOFF_MAX_SECONDS)
        last = {"terminated": self._terminated_state(result)}
        self.restart_count += 1
        self.waiting_reason = "CrashLoopBackOff"
        status = self._base_status("Running", ready=False)
        message = f"back-off {int(backoff)}s restarting failed container={self.spec_container['name']} pod={self.pod_name}"
        status["containerStatuses"] = [self._container_status(
            {"waiting": {"reason": "CrashLoopBackOff", "message": message}}, last_state=last)]
        self._patch_status(status)
        end = time.monotonic() + backoff
        while time.monotonic() < end:
            if self.agent._stop.is_set():
                raise _Stopped()
            if self.deletion_requested:
                self._finish_deleted(None)
                return False
            self._wake.wait(min(WORKER_TICK_SECONDS, max(0.0, end - time.monotonic())))
            self._wake.clear()
        return True

    def _finish_reported(self) -> None:
        """The outcome reached the API before a restart; make sure it is still there."""
        status = self.container.reported() or {}
        if (self.pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            self._patch_status(status)
        if self.deletion_requested and not self._deleted:
            self._delete_now()

    def _finish_deleted(self, result: dict[str, Any] | None) -> None:
        """Graceful deletion: report how the process ended, then remove the pod for good."""
        if result is not None and not self._deleted:
            self._report_terminal(result)
        if not self._deleted:
            self._delete_now()

    def _delete_now(self) -> None:
        try:
            self.agent._call(self.agent.core.delete_namespaced_pod, self.pod_name, self.namespace,
                             body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}})
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
