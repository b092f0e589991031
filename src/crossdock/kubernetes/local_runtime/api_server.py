"""The pods subset of the Kubernetes API, served over HTTPS on 127.0.0.1 to holders of its token.

Every reply a client can branch on (status codes, Status bodies, watch framing, deletion
semantics, binding conflicts) follows kube-apiserver v1.20, which the contract tests run
against too; where this server does less than a cluster (no namespace controller, no
admission chain), it does so without giving a client a different answer for what it does.
The parts: :mod:`.api_handler` routes a request, :mod:`.api_objects` decides what a write
does, :mod:`.api_listing` lists and watches, :mod:`.api_discovery` describes the API.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

from crossdock.kubernetes.local_runtime.api_handler import ApiHandler
from crossdock.kubernetes.local_runtime.api_objects import DEFAULT_NAMESPACE, ObjectRules
from crossdock.kubernetes.local_runtime.auth import BearerAuth
from crossdock.kubernetes.local_runtime.faults import AgentHooks, ApiFaults
from crossdock.kubernetes.local_runtime.http_server import QuietHTTPServer
from crossdock.kubernetes.local_runtime.store import ObjectStore
from crossdock.kubernetes.local_runtime.tls import server_context


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
        #: Set on stop, so that open watches end instead of holding their connections.
        self.stopping = threading.Event()
        self.objects = ObjectRules(self.store)
        self.objects.ensure_namespace(DEFAULT_NAMESPACE)
        handler = type("BoundHandler", (ApiHandler,), {"api": self})
        self.httpd = QuietHTTPServer((host, port), handler, ssl_context=server_context(*tls) if tls else None)
        self.host, self.port = self.httpd.server_address[:2]

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> "ApiServer":
        self.httpd.start("pods-api")
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.stop()
        self.store.close()

    def count_request(self) -> None:
        with self._count_lock:
            self.requests_served += 1
