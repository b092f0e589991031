"""Calling the runtime's own endpoints (``/_crossdock/stats``, ``/_crossdock/faults/…``) as a client.

They need the same credentials and TLS settings as the pods API, so the request goes
through an official ``ApiClient`` configured from the runtime's kubeconfig (or its
:meth:`LocalRuntime.api_client`) — the way any user of the runtime reaches it.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from crossdock.kubernetes.local_runtime.auth import client_token


def runtime_request(api_client: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """``(status, parsed JSON body)`` of one request to the API server ``api_client`` points at."""
    _, url, headers, _, _ = api_client.param_serialize(
        method=method, resource_path=path, header_params={"Content-Type": "application/json",
                                                          "Accept": "application/json"},
        auth_settings=["BearerToken"])
    response = api_client.rest_client.request(method, url, headers=headers,
                                              body=body if body is not None or method != "POST" else {})
    data = response.read() if hasattr(response, "read") else response.data
    return response.status, (json.loads(data) if data else None)


def agent_request(api_client: Any, host: str, port: int, path: str, *, timeout: float = 10.0) -> tuple[int, Any]:
    """``(status, parsed JSON body)`` of a GET to a node agent's endpoint, with ``api_client``'s token.

    The agent's certificate is self-signed and not verified, as an API server calling a
    kubelet does not verify it without a kubelet CA.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    headers = {"Authorization": f"Bearer {client_token(api_client) or ''}"}
    request = urllib.request.Request(f"https://{host}:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
