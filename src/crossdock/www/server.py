"""uvicorn serving the application in this process: in the foreground (``crossdock webserver``)
or on a thread beside other work (``crossdock standalone``, tests, the benchmark).

The socket is bound before uvicorn starts, so port 0 picks a free port that :attr:`url`
then names, and a taken port or a refused address fails at once, in one line. The check
that a non-loopback address has sign-in on (:mod:`.listen`) runs before anything binds.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import threading
import time
from typing import Any

from crossdock.configuration import ConfigError
from crossdock.www.auth import Authenticator
from crossdock.www.listen import check_listen_address

log = logging.getLogger("crossdock.webserver")

#: Seconds :meth:`WebServer.start` waits for uvicorn to accept connections.
START_TIMEOUT = 15.0
#: Seconds :meth:`WebServer.stop` gives open requests to finish.
STOP_TIMEOUT = 10.0


class AddressInUse(ConfigError):
    """Another process listens on the port already."""


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        error = AddressInUse if exc.errno == errno.EADDRINUSE else ConfigError
        raise error(f"the web server cannot listen on {host}:{port}: {exc.strerror or exc} "
                    f"(see [webserver] host and port, or --host / --port)") from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


class WebServer:
    """The REST API and UI on ``host:port``.

    :param host: / :param port: where to listen (default ``[webserver] host`` / ``port``; port 0: any free).
    :param app: the ASGI app (default: :func:`crossdock.www.app.create_app` for this host).
    :param authenticator: who may call (default: ``[webserver] auth_users``); decides
        whether a non-loopback host is allowed.
    :param log_level: uvicorn's own log level (its access log is off).
    :param queue_monitor: a started queue monitor the queues page shows (default: its own).
    """

    def __init__(self, *, host: str | None = None, port: int | None = None, app: Any = None,
                 authenticator: Authenticator | None = None, log_level: str = "warning",
                 queue_monitor: Any = None) -> None:
        from crossdock.configuration import conf

        self.host = host if host is not None else conf.getstr("webserver", "host")
        self.port = int(port if port is not None else conf.getint("webserver", "port"))
        self.authenticator = authenticator if authenticator is not None else Authenticator.from_conf()
        check_listen_address(self.host, auth_enabled=self.authenticator.enabled)
        if app is None:
            from crossdock.www.app import create_app

            app = create_app(authenticator=self.authenticator, listen_host=self.host, queue_monitor=queue_monitor)
        self.app = app
        self.log_level = log_level
        self._socket: socket.socket | None = None
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` as bound (a wildcard host is shown as 127.0.0.1)."""
        host, port = self.host, self.port
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def sign_in(self) -> str:
        return "on" if self.authenticator.enabled else "off (loopback only)"

    def _uvicorn(self):
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):
                """SIGINT/SIGTERM stop the server gracefully and the command then exits 0
                (uvicorn's own handling raises the signal again once it has stopped)."""
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
                try:
                    yield
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)

        config = uvicorn.Config(self.app, log_level=self.log_level, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=STOP_TIMEOUT, server_header=False)
        return Server(config)

    def bind(self) -> "WebServer":
        """Take the port now (port 0: a free one, then in :attr:`port` and :attr:`url`)."""
        if self._socket is None:
            self._socket = _bind(self.host, self.port)
            self.port = self._socket.getsockname()[1]
        return self

    def start(self) -> "WebServer":
        """Bind and serve on a thread; returns once connections are accepted."""
        self.bind()
        self._server = self._uvicorn()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="crossdock-webserver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"the web server did not start on {self.host}:{self.port} (see its log)")
            time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        """Bind (unless bound) and serve in this thread until SIGINT or SIGTERM (uvicorn handles both)."""
        self.bind()
        self._server = self._uvicorn()
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._close_socket()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT + 5)
            self._thread = None
        self._close_socket()

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
