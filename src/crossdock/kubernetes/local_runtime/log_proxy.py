"""``GET pods/{name}/log``: the API server fetches the log from the node's agent, as kube-apiserver does.

The agent's endpoint is found through the Node's ``status.daemonEndpoints.kubeletEndpoint``
and called over HTTPS with the API server's bearer token (the agent accepts the token the
API knows it by). The certificate is not verified, as a real API server without a kubelet
CA configured does not verify it either.
"""

from __future__ import annotations

import http.client
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from crossdock.kubernetes.local_runtime.errors import ApiError, bad_request, not_found

if TYPE_CHECKING:
    from crossdock.kubernetes.local_runtime.api_handler import ApiHandler

LOG_PROXY_TIMEOUT = 30.0
LOG_PARAMS = ("tailLines", "follow", "timestamps", "limitBytes", "sinceSeconds", "previous")
READ_BLOCK = 65536


def kubelet_address(node: dict[str, Any]) -> tuple[str, int]:
    status = node.get("status") or {}
    addresses = status.get("addresses") or []
    host = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), None) or "127.0.0.1"
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if not port:
        raise ApiError(500, f"node {node['metadata']['name']} has no kubelet endpoint")
    return host, int(port)


def proxy_pod_log(handler: "ApiHandler", namespace: str, name: str, query: dict[str, str]) -> None:
    """Stream the container log to ``handler``'s client, or raise the error the real server gives."""
    api = handler.api
    pod = api.store.get("pods", namespace, name)
    containers = [c["name"] for c in pod["spec"].get("containers", [])]
    container = query.get("container")
    if not container:
        if len(containers) != 1:
            raise bad_request(f"a container name must be specified for pod {name}, "
                              f"choose one of: [{' '.join(containers)}]")
        container = containers[0]
    elif container not in containers:
        raise bad_request(f"container {container} is not valid for pod {name}")
    node_name = pod["spec"].get("nodeName")
    if not node_name:
        handler._start_stream("text/plain")
        handler._end_stream()
        return
    try:
        node = api.store.get("nodes", "", node_name)
    except ApiError:
        raise not_found("pods", node_name) from None  # the real server words it so
    host, port = kubelet_address(node)
    params = {k: v for k, v in query.items() if k in LOG_PARAMS}
    url = f"/containerLogs/{namespace}/{name}/{container}" + (f"?{urlencode(params)}" if params else "")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(host, port, timeout=LOG_PROXY_TIMEOUT, context=context)
    try:
        try:
            connection.request("GET", url, headers=api.auth.header())
            response = connection.getresponse()
        except OSError as exc:
            raise ApiError(500, f'Get "https://{host}:{port}{url}": {exc}') from None
        if response.status != 200:
            text = response.read(1024).decode("utf-8", "replace").strip()
            if response.status in (401, 403):  # the node refused us, not the client: not the client's 401
                raise ApiError(500, f"node {node_name} refused the API server's credentials "
                                    f"({response.status}): {text}")
            raise ApiError(response.status, text or f"kubelet answered {response.status}")
        handler._start_stream("text/plain")
        try:
            while True:
                data = response.read1(READ_BLOCK)
                if not data:
                    break
                handler._chunk(data)
            handler._end_stream()
        except (OSError, http.client.HTTPException):  # either side cut the stream (a follow ended)
            handler.close_connection = True
    finally:
        connection.close()
