"""The threading HTTPS server, and the request handler base, both of the runtime's endpoints use.

The TLS handshake runs in the connection's own thread, not in the accepting one, so a
client that connects and says nothing cannot stall everyone else's requests.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


#: Seconds a client has to complete the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds between the serving thread's checks for a stop.
STOP_POLL_SECONDS = 0.2


class QuietHTTPServer(ThreadingHTTPServer):
    """Treats a client hanging up (watch closed, keep-alive reset) as normal, not a traceback.

    :param ssl_context: serve HTTPS with this server-side context (plain HTTP when None).
    """

    daemon_threads = True

    def __init__(self, address: Any, handler: Any, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self._serving: threading.Thread | None = None
        super().__init__(address, handler)

    def start(self, name: str) -> None:
        """Serve from a daemon thread called ``name`` until :meth:`stop`."""
        self._serving = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": STOP_POLL_SECONDS},
                                         name=name, daemon=True)
        self._serving.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket (a server never started is only closed)."""
        if self._serving is not None:
            self.shutdown()
        self.server_close()

    def get_request(self) -> Any:
        connection, address = self.socket.accept()
        if self.ssl_context is not None:
            connection = self.ssl_context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(HANDSHAKE_TIMEOUT)
            request.do_handshake()
            request.settimeout(None)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError, ssl.SSLError, OSError)):
            log.debug("client %s went away: %s", client_address, error)
            return
        log.exception("request from %s failed", client_address)


class QuietRequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, access lines at debug level, and chunked streaming."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def setup(self) -> None:
        super().setup()
        # Small replies must not wait for the client's delayed ACK (Nagle): 40 ms per call otherwise.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
