"""One HTTP request to the pods API: authenticate, route by path and method, answer in JSON.

Every failure leaves as a ``Status`` body with the real server's code, so a client's
error handling (retry on 429/5xx, relist on 410, give up on 4xx) runs as on a cluster;
an unexpected exception becomes a 500 for that one request, never a dead server.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, urlsplit

from crossdock.kubernetes.local_runtime import errors
from crossdock.kubernetes.local_runtime.api_discovery import HEALTH_PATHS, discovery_document
from crossdock.kubernetes.local_runtime.api_listing import serve_collection
from crossdock.kubernetes.local_runtime.api_objects import DEFAULT_NAMESPACE
from crossdock.kubernetes.local_runtime.auth import unauthorized
from crossdock.kubernetes.local_runtime.errors import ApiError, bad_request
from crossdock.kubernetes.local_runtime.http_server import QuietRequestHandler
from crossdock.kubernetes.local_runtime.log_proxy import proxy_pod_log
from crossdock.kubernetes.local_runtime.patch import apply_patch
from crossdock.kubernetes.local_runtime.table import pods_table, wants_table

if TYPE_CHECKING:
    from crossdock.kubernetes.local_runtime.api_server import ApiServer

log = logging.getLogger(__name__)

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

NOT_ALLOWED = "the server does not allow this method on the requested resource"


def _method(name: str) -> Callable[["ApiHandler"], None]:
    """A ``do_<VERB>`` that hands the request to the dispatcher as ``name``."""

    def handle(self: "ApiHandler") -> None:
        self._dispatch(name)

    return handle


class ApiHandler(QuietRequestHandler):
    """Serves ``api`` (set on a subclass per server, as ``http.server`` builds one handler per request)."""

    api: "ApiServer"
    server_version = "crossdock-pods-api"
    do_GET = do_HEAD = _method("GET")  # a HEAD is answered as a GET without its body
    do_POST = _method("POST")
    do_PUT = _method("PUT")
    do_PATCH = _method("PATCH")
    do_DELETE = _method("DELETE")

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
            if path in HEALTH_PATHS:
                data = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            document = discovery_document(path, host=self.api.host, port=self.api.port)
            if document is not None:
                return self._send_json(200, document)
        for pattern, name in ROUTES:
            match = pattern.match(path)
            if match:
                handler: Callable[..., None] = getattr(self, f"_r_{name}")
                return handler(method, query, *match.groups())
        raise ApiError(404, "the server could not find the requested resource", details={})

    # -- pods --------------------------------------------------------------------------
    def _r_all_pods(self, method: str, query: dict[str, str]) -> None:
        if method != "GET":
            raise ApiError(405, NOT_ALLOWED)
        serve_collection(self, query, "pods", None)

    def _r_pods(self, method: str, query: dict[str, str], namespace: str) -> None:
        if method == "GET":
            return serve_collection(self, query, "pods", namespace)
        if method == "POST":
            created = self.api.objects.create_pod(namespace, self._body())
            return self._send_json(201, created)
        raise ApiError(405, NOT_ALLOWED)

    def _r_pod(self, method: str, query: dict[str, str], namespace: str, name: str) -> None:
        objects = self.api.objects
        if method == "GET":
            pod = self.api.store.get("pods", namespace, name)
            if wants_table(self.headers.get("Accept")):
                return self._send_json(200, pods_table([pod], resource_version=pod["metadata"]["resourceVersion"]))
            return self._send_json(200, pod)
        if method == "DELETE":
            options = self._body() or {}
            if "gracePeriodSeconds" in query:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            return self._send_json(200, objects.delete_pod(namespace, name, options))
        if method == "PUT":
            body = self._body()
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if not rv:
                raise errors.invalid("Pod", name, [{"reason": "FieldValueInvalid", "field": "metadata.resourceVersion",
                                                    "message": "Invalid value: 0x0: must be specified for an update"}])
            return self._send_json(200, objects.update_pod(namespace, name, lambda _: body, status_only=False,
                                                           expect_rv=rv))
        if method == "PATCH":
            return self._send_json(200, self._patch_pod(namespace, name, status_only=False))
        raise ApiError(405, NOT_ALLOWED)

    def _patch_pod(self, namespace: str, name: str, *, status_only: bool) -> dict[str, Any]:
        patch = self._body(patch=True)
        content_type = self.headers.get("Content-Type", "")
        return self.api.objects.update_pod(namespace, name, lambda current: apply_patch(content_type, current, patch),
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
                return self._send_json(200, self.api.objects.update_pod(namespace, name, lambda _: body,
                                                                        status_only=True, expect_rv=rv))
        if sub == "binding" and method == "POST":
            self.api.objects.bind_pod(namespace, name, self._body())
            return self._send_json(201, errors.success(201))
        if sub == "log" and method == "GET":
            return proxy_pod_log(self, namespace, name, query)
        raise ApiError(405, NOT_ALLOWED)

    def _r_bindings(self, method: str, query: dict[str, str], namespace: str) -> None:
        if method != "POST":
            raise ApiError(405, NOT_ALLOWED)
        body = self._body()
        name = (body.get("metadata") or {}).get("name", "")
        self.api.objects.bind_pod(namespace, name, body)
        self._send_json(201, errors.success(201))

    # -- namespaces and nodes -----------------------------------------------------------
    def _r_cluster_all(self, method: str, query: dict[str, str], resource: str) -> None:
        if method == "GET":
            return serve_collection(self, query, resource, None)
        if method == "POST":
            return self._send_json(201, self.api.objects.create_cluster_object(resource, self._body()))
        raise ApiError(405, NOT_ALLOWED)

    def _r_cluster_one(self, method: str, query: dict[str, str], resource: str, name: str) -> None:
        store = self.api.store
        if method == "GET":
            return self._send_json(200, store.get(resource, "", name))
        if method == "DELETE":
            self._body()
            if resource == "namespaces":
                return self._send_json(200, self.api.objects.delete_namespace(name))
            return self._send_json(200, store.delete(resource, "", name))
        if method in ("PUT", "PATCH"):
            return self._send_json(200, self._update_cluster(resource, name, method, status_only=False))
        raise ApiError(405, NOT_ALLOWED)

    def _r_cluster_sub(self, method: str, query: dict[str, str], resource: str, name: str, sub: str) -> None:
        if sub == "finalize" and resource == "namespaces" and method == "PUT":
            self._body()
            return self._send_json(200, self.api.objects.delete_namespace(name))
        if sub == "status":
            if method == "GET":
                return self._send_json(200, self.api.store.get(resource, "", name))
            if method in ("PUT", "PATCH"):
                return self._send_json(200, self._update_cluster(resource, name, method, status_only=True))
        raise ApiError(405, NOT_ALLOWED)

    def _update_cluster(self, resource: str, name: str, method: str, *, status_only: bool) -> dict[str, Any]:
        body = self._body(patch=method == "PATCH")
        if method == "PATCH":
            content_type = self.headers.get("Content-Type", "")
            return self.api.objects.update_cluster_object(
                resource, name, lambda old: apply_patch(content_type, old, body), status_only=status_only)
        expect = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        return self.api.objects.update_cluster_object(resource, name, lambda _: body, status_only=status_only,
                                                      expect_rv=expect)

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
