"""Requests refused before any route runs, and the headers every answer carries.

* **Cross-site writes** (CSRF): a POST, PATCH, PUT or DELETE whose ``Origin`` is not this
  server, or that the browser marks ``Sec-Fetch-Site: cross-site``/``same-site``, is 403.
  Credentials travel only in a header (:mod:`.auth`), which another site cannot make a
  browser send; this check also covers the server with sign-in off, where a form on any
  web page could otherwise POST to ``127.0.0.1``.
* **DNS rebinding**: with sign-in off, a request must name this machine in ``Host``
  (a loopback name or the address listened on); a page whose own name was made to
  resolve to 127.0.0.1 gets 403 instead of the API.
* **NUL characters** in the path or query: 400 (no database takes them as text).

Every answer gets ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``,
and a Content-Security-Policy that allows the UI's own scripts and styles only and no
framing (so no other page can overlay the action buttons).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossdock.www.errors import problem

UNSAFE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                                 b"base-uri 'none'; form-action 'self'; object-src 'none'"),
]


def _hostname(host: str) -> str:
    """``host[:port]`` → host, lower-cased (``[::1]:8080`` → ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class RequestGuard:
    """ASGI middleware applying the checks of the module docstring.

    :param auth_enabled: sign-in is on (the Host check is then not needed).
    :param listen_host: the address the server listens on, also accepted in ``Host``.
    """

    def __init__(self, app: ASGIApp, *, auth_enabled: bool, listen_host: str = "127.0.0.1") -> None:
        self.app = app
        self.auth_enabled = auth_enabled
        self.allowed_hosts = set(LOOPBACK_HOSTS) | {_hostname(listen_host)}

    def refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        path, query = scope.get("path", ""), scope.get("query_string", b"").decode("latin-1")
        if "\x00" in path or "\x00" in unquote(query):
            return 400, "the path or query holds a NUL character"
        if not self.auth_enabled:
            host = _hostname(headers.get("host", ""))
            if host not in self.allowed_hosts and not host.startswith("127."):
                return 403, (f"this server has no sign-in, so it answers only requests addressed to this "
                             f"machine (Host: 127.0.0.1 or localhost), not {host!r}")
        if scope.get("method") in UNSAFE_METHODS:
            site = headers.get("sec-fetch-site")
            if site in ("cross-site", "same-site"):
                return 403, f"a {scope['method']} from another site is refused (Sec-Fetch-Site: {site})"
            origin = headers.get("origin")
            if origin is not None:
                netloc = urlsplit(origin).netloc.lower() if origin != "null" else "null"
                if netloc != headers.get("host", "").strip().lower():
                    return 403, (f"a {scope['method']} from origin {origin!r} is refused: only this server's "
                                 f"own pages may act")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        refused = self.refusal(scope, Headers(scope=scope))
        if refused is not None:
            await problem(*refused)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)
