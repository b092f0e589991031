"""The threading HTTPS server both of the runtime's endpoints use.

The TLS handshake runs in the connection's own thread, not in the accepting one, so a
client that connects and says nothing cannot stall everyone else's requests.
"""

from __future__ import annotations

import logging
import ssl
import sys
from http.server import ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


#: Seconds a client has to complete the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0


class QuietHTTPServer(ThreadingHTTPServer):
    """Treats a client hanging up (watch closed, keep-alive reset) as normal, not a traceback.

    :param ssl_context: serve HTTPS with this server-side context (plain HTTP when None).
    """

    daemon_threads = True

    def __init__(self, address: Any, handler: Any, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        super().__init__(address, handler)

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
