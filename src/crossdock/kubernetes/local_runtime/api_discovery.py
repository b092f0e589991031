"""The fixed documents clients read before they call anything: version, API groups, resources.

kubectl and the official client decide from these what they may ask for (and how to
print it), so they describe exactly the subset the local API serves, in v1.20's words.
"""

from __future__ import annotations

from typing import Any

HEALTH_PATHS = ("/healthz", "/readyz", "/livez")

SERVER_VERSION = {
    "major": "1", "minor": "20", "gitVersion": "v1.20.2-crossdock", "gitCommit": "",
    "gitTreeState": "clean", "buildDate": "", "goVersion": "", "compiler": "python",
    "platform": "linux/amd64",
}

API_RESOURCE_LIST = {
    "kind": "APIResourceList", "groupVersion": "v1",
    "resources": [
        {"name": "namespaces", "singularName": "", "namespaced": False, "kind": "Namespace",
         "verbs": ["create", "delete", "get", "list", "patch", "watch"], "shortNames": ["ns"]},
        {"name": "nodes", "singularName": "", "namespaced": False, "kind": "Node",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["no"]},
        {"name": "nodes/status", "singularName": "", "namespaced": False, "kind": "Node",
         "verbs": ["get", "patch", "update"]},
        {"name": "pods", "singularName": "", "namespaced": True, "kind": "Pod",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
         "shortNames": ["po"], "categories": ["all"]},
        {"name": "pods/binding", "singularName": "", "namespaced": True, "kind": "Binding", "verbs": ["create"]},
        {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
        {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod",
         "verbs": ["get", "patch", "update"]},
    ],
}


def discovery_document(path: str, *, host: str, port: int) -> dict[str, Any] | None:
    """The body served at ``path`` (a GET), or None when ``path`` is not a discovery path."""
    if path == "/version":
        return SERVER_VERSION
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"{host}:{port}"}]}
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
    if path == "/api/v1":
        return API_RESOURCE_LIST
    return None
