"""The pods subset of the Kubernetes API, served over HTTPS on 127.0.0.1 to holders of its token.

Every reply a client can branch on (status codes, Status bodies, watch framing, deletion
semantics, binding conflicts) follows kube-apiserver v1.20, which the contract tests run
against too; where this server does less than a cluster (no namespace controller, no
admission chain), it does so without giving a client a different answer for what it does.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import random
import re
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from crossdock.kubernetes.local_runtime import errors
from crossdock.kubernetes.local_runtime.auth import BearerAuth, unauthorized
from crossdock.kubernetes.local_runtime.errors import ApiError, bad_request, not_found
from crossdock.kubernetes.local_runtime.faults import AgentHooks, ApiFaults
from crossdock.kubernetes.local_runtime.http_server import QuietHTTPServer
from crossdock.kubernetes.local_runtime.log_proxy import proxy_pod_log
from crossdock.kubernetes.local_runtime.patch import apply_patch
from crossdock.kubernetes.local_runtime.selector import GENERIC_FIELDS, POD_FIELDS, FieldSelector, LabelSelector
from crossdock.kubernetes.local_runtime.store import ObjectStore, now_rfc3339
from crossdock.kubernetes.local_runtime.table import pods_table, wants_table
from crossdock.kubernetes.local_runtime.tls import server_context
from crossdock.kubernetes.local_runtime.validation import (
    DNS1123_LABEL, LABEL_MESSAGE, default_pod, prune_object, qos_class, validate_object_name, validate_pod,
    validate_pod_update,
)

log = logging.getLogger(__name__)

SERVER_VERSION = {
    "major": "1", "minor": "20", "gitVersion": "v1.20.2-crossdock", "gitCommit": "",
    "gitTreeState": "clean", "buildDate": "", "goVersion": "", "compiler": "python",
    "platform": "linux/amd64",
}
#: Without timeoutSeconds a watch ends after a random 30-60 minutes, as on a real server.
MIN_WATCH_SECONDS = 1800
GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATE_NAME_LENGTH = 5
DEFAULT_NAMESPACE = "default"

RESOURCES = {
    "pods": {"kind": "Pod", "namespaced": True, "fields": POD_FIELDS},
    "nodes": {"kind": "Node", "namespaced": False, "fields": GENERIC_FIELDS},
    "namespaces": {"kind": "Namespace", "namespaced": False, "fields": GENERIC_FIELDS},
}

API_RESOURCE_LIST = {
    "kind": "APIResourceList", "groupVersion": "v1",
    "resources": [
        {"name": "namespaces", "singularName": "", "namespaced": False, "kind": "Namespace",
         "verbs": ["create", "delete", "get", "list", "patch", "watch"], "shortNames": ["ns"]},
        {"name": "nodes", "singularName": "", "namespaced": False, "kind": "Node",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["no"]},
        {"name": "nodes/status", "singularName": "", "namespaced": False, "kind": "Node",
         "verbs": ["get", "patch", "update"]},
        {"name": "pods", "singularName": "", "namespaced": True, "kind": "Pod",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
         "shortNames": ["po"], "categories": ["all"]},
        {"name": "pods/binding", "singularName": "", "namespaced": True, "kind": "Binding", "verbs": ["create"]},
        {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
        {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod",
         "verbs": ["get", "patch", "update"]},
    ],
}

_SEGMENT = r"([^/]+)"
ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/api/v1/namespaces/" + _SEGMENT + r"/pods/" + _SEGMENT + r"/(status|binding|log)$"), "pod_sub"),
    (re.compile(r"^/api/v1/namespaces/" + _SEGMENT + r"/pods/" + _SEGMENT + r"$"), "pod"),
    (re.compile(r"^/api/v1/namespaces/" + _SEGMENT + r"/pods$"), "pods"),
    (re.compile(r"^/api/v1/namespaces/" + _SEGMENT + r"/bindings$"), "bindings"),
    (re.compile(r"^/api/v1/pods$"), "all_pods"),
    (re.compile(r"^/api/v1/(namespaces|nodes)/" + _SEGMENT + r"/(status|finalize)$"), "cluster_sub"),
    (re.compile(r"^/api/v1/(namespaces|nodes)/" + _SEGMENT + r"$"), "cluster_one"),
    (re.compile(r"^/api/v1/(namespaces|nodes)$"), "cluster_all"),
]

#: Fields of a pod an update may change, as the real server's update validation allows.
_MUTABLE_META = ("labels", "annotations", "finalizers", "ownerReferences")


class ApiServer:
    """The local pods API: a ThreadingHTTPServer around an :class:`ObjectStore`.

    Every request but a health probe must carry ``token`` (random when not given); with
    ``tls`` (certificate and key files) it serves HTTPS, which kubectl needs to send it.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, store: ObjectStore | None = None,
                 agent_hooks: AgentHooks | None = None, token: str | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.auth = BearerAuth(token or secrets.token_urlsafe(32))
        self.scheme = "https" if tls else "http"
        self.store = store or ObjectStore()
        self.faults = ApiFaults()
        self.agent_hooks = agent_hooks
        self.requests_served = 0
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._ensure_namespace(DEFAULT_NAMESPACE)
        handler = type("BoundHandler", (_Handler,), {"api": self})
        self.httpd = QuietHTTPServer((host, port), handler, ssl_context=server_context(*tls) if tls else None)
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> "ApiServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="pods-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.store.close()

    def count_request(self) -> None:
        with self._count_lock:
            self.requests_served += 1

    def _ensure_namespace(self, name: str) -> None:
        if not self.store.exists("namespaces", "", name):
            self.store.create("namespaces", {"metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]},
                                             "status": {"phase": "Active"}}, kind="Namespace")

    # -- pods ------------------------------------------------------------------------------
    def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("kind") not in (None, "Pod"):
            raise bad_request(f"the kind of the provided object ({body.get('kind')}) is not Pod")
        pod = prune_object("Pod", body)
        meta = pod.setdefault("metadata", {}) or {}
        pod["metadata"] = meta
        if meta.get("namespace") not in (None, "", namespace):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        meta["namespace"] = namespace
        for server_owned in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            meta.pop(server_owned, None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                random.choice(GENERATE_NAME_ALPHABET) for _ in range(GENERATE_NAME_LENGTH))
        default_pod(pod)
        validate_pod(pod)
        if not self.store.exists("namespaces", "", namespace):
            raise not_found("namespaces", namespace)
        pod["status"] = {"phase": "Pending", "qosClass": qos_class(pod)}
        if pod["spec"].get("nodeName"):
            pod["status"]["conditions"] = [_condition("PodScheduled", "True")]
        return self.store.create("pods", pod, kind="Pod")

    def update_pod(self, namespace: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any]], *,
                   status_only: bool, expect_rv: str | None = None) -> dict[str, Any]:
        """Store ``change(current)``, keeping what the subresource may not touch.

        ``change`` runs under the store's lock, so a patch always applies to the latest
        version and never fails with a conflict the client did not ask for.
        """

        def mutate(old: dict[str, Any]) -> dict[str, Any]:
            new = change(copy.deepcopy(old))
            new_rv = (new.get("metadata") or {}).get("resourceVersion")
            if new_rv and new_rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict("pods", name, "the object has been modified; please apply your "
                                                    "changes to the latest version and try again")
            new = prune_object("Pod", new)
            new_uid = (new.get("metadata") or {}).get("uid")
            if new_uid and new_uid != old["metadata"]["uid"]:
                raise errors.conflict("pods", name, f"Precondition failed: UID in precondition: {new_uid}, "
                                                    f"UID in object meta: {old['metadata']['uid']}")
            if status_only:
                old["status"] = new.get("status") or {}
                return old
            validate_pod_update(new)
            new_meta = new.get("metadata") or {}
            for key in _MUTABLE_META:
                if new_meta.get(key):
                    old["metadata"][key] = new_meta[key]
                else:
                    old["metadata"].pop(key, None)
            _check_spec_update(old, new.get("spec") or {})
            return old

        return self.store.update("pods", namespace, name, mutate, expect_rv=expect_rv)

    def delete_pod(self, namespace: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
        pod = self.store.get("pods", namespace, name)
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != pod["metadata"]["uid"]:
            raise errors.conflict("pods", name, f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                                                f"UID in object meta: {pod['metadata']['uid']}")
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        grace = max(int(grace), 0)
        phase = pod.get("status", {}).get("phase")
        if not pod["spec"].get("nodeName") or phase in ("Succeeded", "Failed"):
            grace = 0
        meta = pod["metadata"]
        if grace > 0 and meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds", 0) <= grace:
            return pod  # already terminating, and not asked to hurry

        def mark(current: dict[str, Any]) -> dict[str, Any]:
            current["metadata"]["deletionTimestamp"] = now_rfc3339(grace)
            current["metadata"]["deletionGracePeriodSeconds"] = grace
            return current

        marked = self.store.update("pods", namespace, name, mark)
        if grace == 0:
            return self.store.delete("pods", namespace, name, uid=marked["metadata"]["uid"])
        return marked

    def bind_pod(self, namespace: str, name: str, binding: dict[str, Any]) -> None:
        target = (binding.get("target") or {}).get("name")
        if not target:
            raise errors.invalid("Binding", name, [{"reason": "FieldValueRequired", "message": "Required value",
                                                    "field": "target.name"}])

        def bind(pod: dict[str, Any]) -> dict[str, Any]:
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("pods/binding", name, f"pod {name} is being deleted, cannot be assigned to a host")
            assigned = pod["spec"].get("nodeName")
            if assigned:
                raise errors.conflict("pods/binding", name, f'pod {name} is already assigned to node "{assigned}"')
            pod["spec"]["nodeName"] = target
            conditions = [c for c in pod["status"].get("conditions", []) if c.get("type") != "PodScheduled"]
            pod["status"]["conditions"] = conditions + [_condition("PodScheduled", "True")]
            return pod

        self.store.update("pods", namespace, name, bind)

    # -- namespaces and nodes ------------------------------------------------------------
    def create_cluster_object(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = RESOURCES[resource]["kind"]
        obj = prune_object(kind, body)
        meta = obj.setdefault("metadata", {})
        for server_owned in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "managedFields"):
            meta.pop(server_owned, None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                random.choice(GENERATE_NAME_ALPHABET) for _ in range(GENERATE_NAME_LENGTH))
        name = meta.get("name") or ""
        meta.pop("namespace", None)
        if resource == "namespaces":
            if not name or not DNS1123_LABEL.match(name) or len(name) > 63:
                raise errors.invalid(kind, name, [{"reason": "FieldValueInvalid" if name else "FieldValueRequired",
                                                   "message": f'Invalid value: "{name}": {LABEL_MESSAGE}'
                                                   if name else "Required value", "field": "metadata.name"}])
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        else:
            causes = validate_object_name(name) if name else [
                {"reason": "FieldValueRequired", "message": "Required value", "field": "metadata.name"}]
            if causes:
                raise errors.invalid(kind, name, causes)
        return self.store.create(resource, obj, kind=kind)

    def delete_namespace(self, name: str) -> dict[str, Any]:
        """No namespace controller runs here, so a namespace and its pods go at once."""
        self.store.get("namespaces", "", name)
        pods, _ = self.store.list("pods", name)
        for pod in pods:
            try:
                self.store.delete("pods", name, pod["metadata"]["name"])
            except ApiError:
                pass
        return self.store.delete("namespaces", "", name)


def _condition(kind: str, status: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}


def _check_spec_update(old: dict[str, Any], new_spec: dict[str, Any]) -> None:
    """Only images, activeDeadlineSeconds and tolerations may change, as upstream allows."""
    old_spec = old["spec"]
    candidate = copy.deepcopy(new_spec)
    default_pod({"spec": candidate})
    for key in ("activeDeadlineSeconds", "tolerations"):
        if key in candidate:
            old_spec[key] = candidate[key]
    old_containers, new_containers = old_spec.get("containers", []), candidate.get("containers", [])
    comparable_old = copy.deepcopy(old_spec)
    comparable_new = copy.deepcopy(candidate)
    for spec in (comparable_old, comparable_new):
        for key in ("activeDeadlineSeconds", "tolerations", "nodeName"):
            spec.pop(key, None)
        for container in spec.get("containers", []):
            container.pop("image", None)
            container.pop("imagePullPolicy", None)
    if comparable_old != comparable_new:
        raise errors.invalid("Pod", old["metadata"]["name"], [{
            "reason": "FieldValueForbidden", "field": "spec",
            "message": "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
                       "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` "
                       "(only additions to existing tolerations)"}])
    for old_container, new_container in zip(old_containers, new_containers):
        if new_container.get("image"):
            old_container["image"] = new_container["image"]


def _encode_continue(rv: int, after: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": after}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(padded))["start"]
    except (ValueError, KeyError, TypeError):
        raise bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                          "(version meta.k8s.io/v1)") from None


class _Handler(BaseHTTPRequestHandler):
    api: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "crossdock-pods-api"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def setup(self) -> None:
        super().setup()
        # Small replies must not wait for the client's delayed ACK (Nagle): 40 ms per call otherwise.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- plumbing ----------------------------------------------------------------------
    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        # headers and body leave in one write (end_headers would send them apart)
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(data)
        self.wfile.write(b"".join(self._headers_buffer))
        self._headers_buffer = []

    def _send_error(self, error: ApiError, headers: dict[str, str] | None = None) -> None:
        self._send_json(error.code, error.status(), headers)

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _body(self, *, patch: bool = False) -> Any:
        """The JSON body: an object (a list only for a JSON patch), or a 400 as the real server gives."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
        if isinstance(body, dict) or (patch and isinstance(body, list)):
            return body
        raise bad_request("couldn't get version/kind; json parse error: json: cannot unmarshal "
                          f"{type(body).__name__} into Go value of type struct")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            if not self.api.auth.permits(path, self.headers):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                raise unauthorized()
            if path.startswith("/_crossdock/faults"):
                self._faults(method, path)
                return
            if path == "/_crossdock/stats":
                store = self.api.store
                self._send_json(200, {"requestsServed": self.api.requests_served,
                                      "resourceVersion": str(store.resource_version),
                                      "compactedResourceVersion": str(store.compacted_version)})
                return
            self.api.count_request()
            injected = self.api.faults.take(method, path)
            if injected is not None:
                error, headers = injected
                self._body()
                self._send_error(error, headers)
                return
            self._route(method, path, query)
        except ApiError as error:
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # never let one request take the server down
            log.exception("pods API: %s %s failed", method, self.path)
            try:
                self._send_error(ApiError(500, f"Internal error occurred: {exc}"))
            except OSError:
                self.close_connection = True

    # -- routing -----------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict[str, str]) -> None:
        if method == "GET":
            if path in ("/healthz", "/readyz", "/livez"):
                data = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if path == "/version":
                return self._send_json(200, SERVER_VERSION)
            if path == "/api":
                return self._send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                             "serverAddressByClientCIDRs": [
                                                 {"clientCIDR": "0.0.0.0/0",
                                                  "serverAddress": f"{self.api.host}:{self.api.port}"}]})
            if path == "/apis":
                return self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
            if path == "/api/v1":
                return self._send_json(200, API_RESOURCE_LIST)
        for pattern, name in ROUTES:
            match = pattern.match(path)
            if match:
                handler: Callable[..., None] = getattr(self, f"_r_{name}")
                return handler(method, query, *match.groups())
        raise ApiError(404, "the server could not find the requested resource", details={})

    def _collection(self, method: str, query: dict[str, str], resource: str, namespace: str | None) -> None:
        spec = RESOURCES[resource]
        labels = LabelSelector.parse(query.get("labelSelector"))
        fields = FieldSelector.parse(query.get("fieldSelector"), fields=spec["fields"])

        def matches(obj: dict[str, Any]) -> bool:
            if namespace is not None and obj["metadata"].get("namespace") != namespace:
                return False
            return labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)

        if query.get("watch") in ("1", "true", "True"):
            self._watch(resource, spec["kind"], query, matches)
            return
        items, rv = self.api.store.list(resource, namespace, matches)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if query.get("continue"):
            after = _decode_continue(query["continue"])
            items = [o for o in items if f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" > after]
        limit = int(query.get("limit") or 0)
        if limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            meta["continue"] = _encode_continue(rv, f"{last.get('namespace', '')}/{last['name']}")
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if resource == "pods" and wants_table(self.headers.get("Accept")):
            table = pods_table(items, resource_version=meta["resourceVersion"], continue_token=meta.get("continue"))
            return self._send_json(200, table)
        bare = [{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")} for obj in items]
        self._send_json(200, {"kind": f"{spec['kind']}List", "apiVersion": "v1", "metadata": meta, "items": bare})

    def _watch(self, resource: str, kind: str, query: dict[str, str], matches: Callable[[dict[str, Any]], bool]) -> None:
        raw_rv = query.get("resourceVersion") or ""
        try:
            since = int(raw_rv) if raw_rv else None
        except ValueError:
            raise bad_request(f'resourceVersion: Invalid value: "{raw_rv}": must be a non-negative integer') from None
        timeout = float(query.get("timeoutSeconds") or random.uniform(MIN_WATCH_SECONDS, 2 * MIN_WATCH_SECONDS))
        lines = self.api.store.watch(resource=resource, kind=kind, since=since, matches=matches,
                                     timeout=timeout, stop=self.api._stop)
        self._start_stream("application/json")
        try:
            for line in lines:
                self._chunk(line)
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            lines.close()

    # -- pods --------------------------------------------------------------------------
    def _r_all_pods(self, method: str, query: dict[str, str]) -> None:
        if method != "GET":
            raise ApiError(405, f"the server does not allow this method on the requested resource")
        self._collection(method, query, "pods", None)

    def _r_pods(self, method: str, query: dict[str, str], namespace: str) -> None:
        if method == "GET":
            return self._collection(method, query, "pods", namespace)
        if method == "POST":
            created = self.api.create_pod(namespace, self._body())
            return self._send_json(201, created)
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def _r_pod(self, method: str, query: dict[str, str], namespace: str, name: str) -> None:
        store = self.api.store
        if method == "GET":
            pod = store.get("pods", namespace, name)
            if wants_table(self.headers.get("Accept")):
                return self._send_json(200, pods_table([pod], resource_version=pod["metadata"]["resourceVersion"]))
            return self._send_json(200, pod)
        if method == "DELETE":
            options = self._body() or {}
            if "gracePeriodSeconds" in query:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            return self._send_json(200, self.api.delete_pod(namespace, name, options))
        if method == "PUT":
            body = self._body()
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if not rv:
                raise errors.invalid("Pod", name, [{"reason": "FieldValueInvalid", "field": "metadata.resourceVersion",
                                                    "message": "Invalid value: 0x0: must be specified for an update"}])
            return self._send_json(200, self.api.update_pod(namespace, name, lambda _: body, status_only=False,
                                                            expect_rv=rv))
        if method == "PATCH":
            return self._send_json(200, self._patch_pod(namespace, name, status_only=False))
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def _patch_pod(self, namespace: str, name: str, *, status_only: bool) -> dict[str, Any]:
        patch = self._body(patch=True)
        content_type = self.headers.get("Content-Type", "")
        return self.api.update_pod(namespace, name, lambda current: apply_patch(content_type, current, patch),
                                   status_only=status_only)

    def _r_pod_sub(self, method: str, query: dict[str, str], namespace: str, name: str, sub: str) -> None:
        if sub == "status":
            if method == "GET":
                return self._send_json(200, self.api.store.get("pods", namespace, name))
            if method == "PATCH":
                return self._send_json(200, self._patch_pod(namespace, name, status_only=True))
            if method == "PUT":
                body = self._body()
                rv = (body.get("metadata") or {}).get("resourceVersion") or None
                return self._send_json(200, self.api.update_pod(namespace, name, lambda _: body, status_only=True,
                                                                expect_rv=rv))
        if sub == "binding" and method == "POST":
            self.api.bind_pod(namespace, name, self._body())
            return self._send_json(201, errors.success(201))
        if sub == "log" and method == "GET":
            return proxy_pod_log(self, namespace, name, query)
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def _r_bindings(self, method: str, query: dict[str, str], namespace: str) -> None:
        if method != "POST":
            raise ApiError(405, "the server does not allow this method on the requested resource")
        body = self._body()
        name = (body.get("metadata") or {}).get("name", "")
        self.api.bind_pod(namespace, name, body)
        self._send_json(201, errors.success(201))

    # -- namespaces and nodes -----------------------------------------------------------
    def _r_cluster_all(self, method: str, query: dict[str, str], resource: str) -> None:
        if method == "GET":
            return self._collection(method, query, resource, None)
        if method == "POST":
            return self._send_json(201, self.api.create_cluster_object(resource, self._body()))
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def _r_cluster_one(self, method: str, query: dict[str, str], resource: str, name: str) -> None:
        store = self.api.store
        if method == "GET":
            return self._send_json(200, store.get(resource, "", name))
        if method == "DELETE":
            self._body()
            if resource == "namespaces":
                return self._send_json(200, self.api.delete_namespace(name))
            return self._send_json(200, store.delete(resource, "", name))
        if method in ("PUT", "PATCH"):
            return self._send_json(200, self._update_cluster(resource, name, method, status_only=False))
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def _r_cluster_sub(self, method: str, query: dict[str, str], resource: str, name: str, sub: str) -> None:
        if sub == "finalize" and resource == "namespaces" and method == "PUT":
            self._body()
            return self._send_json(200, self.api.delete_namespace(name))
        if sub == "status":
            if method == "GET":
                return self._send_json(200, self.api.store.get(resource, "", name))
            if method in ("PUT", "PATCH"):
                return self._send_json(200, self._update_cluster(resource, name, method, status_only=True))
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def _update_cluster(self, resource: str, name: str, method: str, *, status_only: bool) -> dict[str, Any]:
        body = self._body(patch=method == "PATCH")
        kind = RESOURCES[resource]["kind"]
        content_type = self.headers.get("Content-Type", "")

        def mutate(old: dict[str, Any]) -> dict[str, Any]:
            new = apply_patch(content_type, old, body) if method == "PATCH" else prune_object(kind, body)
            new = prune_object(kind, new)
            if status_only:
                old["status"] = new.get("status") or {}
                return old
            new["metadata"] = dict(old["metadata"], labels=(new.get("metadata") or {}).get("labels"),
                                   annotations=(new.get("metadata") or {}).get("annotations"))
            for key in ("labels", "annotations"):
                if new["metadata"][key] is None:
                    del new["metadata"][key]
            new["status"] = old.get("status", {})
            new.setdefault("kind", kind)
            new.setdefault("apiVersion", "v1")
            return new

        expect = (body.get("metadata") or {}).get("resourceVersion") if method == "PUT" and isinstance(body, dict) else None
        return self.api.store.update(resource, "", name, mutate, expect_rv=expect)

    # -- test hooks --------------------------------------------------------------------
    def _faults(self, method: str, path: str) -> None:
        body = self._body() if method in ("POST", "PUT") else {}
        action = path[len("/_crossdock/faults"):].strip("/")
        if method == "GET" and not action:
            return self._send_json(200, self.api.faults.describe())
        if method != "POST":
            raise ApiError(405, "fault hooks take POST")
        if action == "fail-next":
            self.api.faults.fail_next(count=int(body.get("count", 1)), code=int(body.get("code", 500)),
                                      retry_after=body.get("retryAfter"), method=body.get("method"),
                                      path_contains=body.get("pathContains"))
            return self._send_json(200, self.api.faults.describe())
        if action == "compact":
            compacted = self.api.store.compact()
            return self._send_json(200, {"compactedResourceVersion": str(compacted)})
        if action == "clear":
            self.api.faults.clear()
            if self.api.agent_hooks is not None:
                self.api.agent_hooks.hold_pending(False)
            return self._send_json(200, self.api.faults.describe())
        hooks = self.api.agent_hooks
        if action in ("hold-pending", "kill") and hooks is None:
            raise ApiError(501, "no node agent runs in this process; use the agent's own fault endpoint")
        if action == "hold-pending":
            hooks.hold_pending(bool(body.get("hold", True)))
            return self._send_json(200, {"holdPending": bool(body.get("hold", True))})
        if action == "kill":
            killed = hooks.kill_pod(namespace=body.get("namespace", DEFAULT_NAMESPACE), name=body["name"],
                                    signal_number=int(body.get("signal", 9)))
            return self._send_json(200 if killed else 404, {"killed": killed})
        raise ApiError(404, f"unknown fault hook {action!r}")
