"""The threading HTTP server both of the runtime's endpoints use."""

from __future__ import annotations

import logging
import ssl
import sys
from http.server import ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


class QuietHTTPServer(ThreadingHTTPServer):
    """Treats a client hanging up (watch closed, keep-alive reset) as normal, not a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError, ssl.SSLError)):
            log.debug("client %s went away: %s", client_address, error)
            return
        log.exception("request from %s failed", client_address)
