"""The node agent ("kubelet"): binds pending pods to its node and runs them as local processes.

It speaks to the API only through the official ``kubernetes`` client, so it runs unchanged
against the local pods API and a real kube-apiserver. Two list+watch loops drive it: one
over unbound pods (it schedules them onto itself) and one over pods bound to its node (it
runs them and reports Pending → Running → Succeeded/Failed). Each running pod has a
worker thread; each pod's process has a shim that outlives the agent, so a restarted
agent reports outcomes that arrived while it was away.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import threading
from pathlib import Path
from typing import Any, Callable

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from crossdock.kubernetes.kube_client import retry_after_seconds
from crossdock.kubernetes.local_runtime.container import Container, ShimPool, read_json
from crossdock.kubernetes.local_runtime.launch import ContainerConfigError, decode_secret_data
from crossdock.kubernetes.local_runtime.log_server import EndpointAuth, KubeletEndpoint, endpoint_auth_for
from crossdock.kubernetes.local_runtime.pod_worker import NODE_IP, TERMINAL_PHASES, PodWorker
from crossdock.kubernetes.local_runtime.pod_worker import AgentStopped as _Stopped
from crossdock.kubernetes.local_runtime.private_files import private_dir
from crossdock.kubernetes.local_runtime.settings import DEFAULT_NODE_NAME
from crossdock.kubernetes.local_runtime.store import now_rfc3339
from crossdock.kubernetes.local_runtime.tls import ensure_self_signed

log = logging.getLogger(__name__)

#: Server-side timeout of each watch request; the loop reconnects from the last version.
WATCH_TIMEOUT_SECONDS = 300
#: (connect, read) seconds for one ordinary API call: a stalled connection is retried
#: instead of holding a pod's worker forever.
CALL_TIMEOUT_SECONDS = (10, 60)
RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0


class NodeAgent:
    """A kubelet for one node, working through any API server.

    :param api_client: a configured ``kubernetes.client.ApiClient``; or give ``kubeconfig``.
    :param node_name: the Node it registers and binds pods to.
    :param state_dir: where pod folders, logs and outcomes live (survives restarts).
    :param namespace: watch only this namespace (``None``: all namespaces).
    :param reject_images: fnmatch patterns of images treated as unpullable (ErrImagePull).
    :param schedule: also bind unbound pods to this node (act as the scheduler).
    :param endpoint_auth: who may call its HTTPS endpoint; by default the bearer token the
        agent itself uses with the API server (see :func:`endpoint_auth_for`).
    """

    def __init__(self, *, api_client: client.ApiClient | None = None, kubeconfig: str | None = None,
                 node_name: str = DEFAULT_NODE_NAME, state_dir: Path | str,
                 namespace: str | None = None, reject_images: list[str] | None = None,
                 schedule: bool = True, endpoint_host: str = NODE_IP, endpoint_port: int = 0,
                 endpoint_auth: EndpointAuth | None = None) -> None:
        if api_client is None:
            api_client = config.new_client_from_config(config_file=kubeconfig)
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.node_name = node_name
        self.state_dir = Path(state_dir)
        self.endpoint_auth = endpoint_auth or endpoint_auth_for(api_client, self.state_dir)
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
        private_dir(self.pods_dir)
        self.shims.fill()
        cert, key = ensure_self_signed(private_dir(self.state_dir / "tls"))
        self.endpoint = KubeletEndpoint(source=self, host=self._endpoint_host, port=self._endpoint_port,
                                        cert=cert, key=key, auth=self.endpoint_auth).start()
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
