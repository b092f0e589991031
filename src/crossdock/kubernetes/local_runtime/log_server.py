"""The node agent's HTTPS endpoint: container logs for the API server, and its fault hooks.

Any API server (ours or a real one) reads a pod's log from the node it runs on at
``GET /containerLogs/{namespace}/{pod}/{container}``, found through the Node's
``status.daemonEndpoints.kubeletEndpoint``; serving that is what makes ``kubectl logs``
work against a real kube-apiserver too.

Nothing is served without authentication (see :class:`EndpointAuth`): the fault hooks
kill pods and the logs may hold anything a task printed.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol
from urllib.parse import parse_qs, urlsplit

from crossdock.kubernetes.local_runtime.auth import BearerAuth, client_token, load_or_create_token, unauthorized
from crossdock.kubernetes.local_runtime.http_server import QuietHTTPServer, QuietRequestHandler
from crossdock.kubernetes.local_runtime.tls import server_context

#: What Go's strconv.ParseBool reads as true, as the kubelet parses ``follow``.
GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
#: Seconds between checks for new output while following a log.
FOLLOW_POLL_SECONDS = 0.1
READ_BLOCK = 65536


class LogSource(Protocol):
    def find_log(self, namespace: str, name: str, container: str) -> tuple[Path | None, str | None, Callable[[], bool]]:
        """(log file, why it is not there yet, "has the container finished?")."""

    def hold_pending(self, hold: bool) -> None: ...

    def kill_pod(self, *, namespace: str, name: str, signal_number: int = 9) -> bool: ...

    def stats(self) -> dict[str, Any]: ...


def tail_bytes(path: Path, lines: int) -> bytes:
    """The last ``lines`` lines of a file, read from the end so big logs stay cheap."""
    if lines <= 0:
        return b""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        end = handle.tell()
        position, data = end, b""
        while position > 0 and data.count(b"\n") <= lines:
            step = min(READ_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    parts = data.split(b"\n")
    trailing = data.endswith(b"\n")
    if trailing:
        parts = parts[:-1]
    kept = parts[-lines:]
    return b"\n".join(kept) + (b"\n" if trailing and kept else b"")


@dataclass(frozen=True)
class EndpointAuth:
    """Who may call the endpoint, as a kubelet decides it.

    :param bearer: the token the agent uses with its API server; our API server sends it.
    :param client_ca: also accept TLS client certificates signed by this CA (how a real
        kube-apiserver given ``--kubelet-client-certificate`` authenticates to a kubelet).
    :param anonymous_log_reads: serve ``/containerLogs`` to anyone (for an API server that
        presents no credentials to kubelets); stats and fault hooks stay authenticated.
    """

    bearer: BearerAuth
    client_ca: Path | None = None
    anonymous_log_reads: bool = False


def endpoint_auth_for(api_client: Any, state_dir: Path, *, client_ca_file: str | None = None,
                      anonymous_log_reads: bool | None = None) -> EndpointAuth:
    """The agent's endpoint accepts the token it uses itself (else one kept in ``state_dir``)."""
    from crossdock.configuration import conf
    from crossdock.kubernetes.local_runtime.settings import SECTION

    if client_ca_file is None:
        client_ca_file = conf.getstr(SECTION, "kubelet_client_ca_file")
    if anonymous_log_reads is None:
        anonymous_log_reads = conf.getboolean(SECTION, "kubelet_anonymous_log_reads")
    token = client_token(api_client) or load_or_create_token(state_dir)
    return EndpointAuth(bearer=BearerAuth(token), client_ca=Path(client_ca_file).expanduser() if client_ca_file
                        else None, anonymous_log_reads=anonymous_log_reads)


class KubeletEndpoint:
    def __init__(self, *, source: LogSource, host: str, port: int, cert: Path, key: Path,
                 auth: EndpointAuth) -> None:
        handler = type("BoundKubeletHandler", (_Handler,), {"source": source, "auth": auth})
        context = server_context(cert, key)
        if auth.client_ca is not None:
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(cafile=str(auth.client_ca))
        self.httpd = QuietHTTPServer((host, port), handler, ssl_context=context)
        self.host, self.port = self.httpd.server_address[:2]

    def start(self) -> "KubeletEndpoint":
        self.httpd.start("kubelet-endpoint")
        return self

    def stop(self) -> None:
        self.httpd.stop()


class _Handler(QuietRequestHandler):
    source: LogSource
    auth: EndpointAuth

    def _authenticated(self, *, log_read: bool) -> bool:
        """True, or a 401 Status has been sent (the body, if any, read first)."""
        if self.auth.bearer.accepts(self.headers):
            return True
        if self.auth.client_ca is not None and self.connection.getpeercert():
            return True  # a certificate only verifies against the configured CA
        if log_read and self.auth.anonymous_log_reads and self.headers.get("Authorization") is None:
            return True
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reply(401, json.dumps(unauthorized().status()), "application/json")
        return False

    def _reply(self, code: int, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        if not self._authenticated(log_read=False):
            return
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        if parts.path.rstrip("/") == "/_crossdock/faults/hold-pending":
            self.source.hold_pending(bool(body.get("hold", True)))
            return self._reply(200, json.dumps({"holdPending": bool(body.get("hold", True))}), "application/json")
        if parts.path.rstrip("/") == "/_crossdock/faults/kill":
            killed = self.source.kill_pod(namespace=body.get("namespace", "default"), name=body.get("name", ""),
                                          signal_number=int(body.get("signal", 9)))
            return self._reply(200 if killed else 404, json.dumps({"killed": killed}), "application/json")
        self._reply(404, "404 page not found")

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if not self._authenticated(log_read=parts.path.startswith("/containerLogs/")):
            return
        if parts.path.rstrip("/") == "/_crossdock/stats":
            return self._reply(200, json.dumps(self.source.stats()), "application/json")
        segments = parts.path.strip("/").split("/")
        if len(segments) != 4 or segments[0] != "containerLogs":
            return self._reply(404, "404 page not found")
        _, namespace, name, container = segments
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path, waiting, finished = self.source.find_log(namespace, name, container)
        if path is None:
            if waiting is None:
                return self._reply(404, f'pod "{name}" in namespace "{namespace}" not found')
            return self._reply(400, f'container "{container}" in pod "{name}" is waiting to start: {waiting}')
        follow = query.get("follow") in GO_TRUE  # the official client sends "True"
        limit = int(query["limitBytes"]) if query.get("limitBytes") else None
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0

        def send(data: bytes) -> bool:
            nonlocal sent
            if limit is not None:
                data = data[: max(limit - sent, 0)]
            if data:
                self._chunk(data)
                sent += len(data)
            return limit is None or sent < limit

        try:
            if query.get("tailLines"):
                data = tail_bytes(path, int(query["tailLines"]))
                with path.open("rb") as handle:
                    handle.seek(0, 2)
                    offset = handle.tell()
                more = send(data)
            else:
                offset, more = 0, True
            while more:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read(READ_BLOCK)
                if data:
                    offset += len(data)
                    more = send(data)
                    continue
                if not follow or finished():
                    with path.open("rb") as handle:  # output written just before the exit
                        handle.seek(offset)
                        rest = handle.read()
                    if rest:
                        send(rest)
                    break
                time.sleep(FOLLOW_POLL_SECONDS)
            self._end_stream()
        except OSError:
            self.close_connection = True
