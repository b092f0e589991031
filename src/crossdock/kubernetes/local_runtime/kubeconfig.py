"""Writes the kubeconfig that points kubectl and the official client at the local pods API."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from crossdock.kubernetes.local_runtime.private_files import private_dir, write_private

CONTEXT_NAME = "crossdock-local"


def write_kubeconfig(path: Path | str, *, server: str, token: str, ca_cert: Path | None = None,
                     namespace: str = "default", context: str = CONTEXT_NAME) -> Path:
    """Write a one-context kubeconfig for ``server``, readable by its owner only.

    It carries the bearer token and the server's certificate as the cluster's CA (inline,
    so a copy of the file works anywhere).
    """
    path = Path(path)
    cluster: dict[str, str] = {"server": server}
    if ca_cert is not None:
        cluster["certificate-authority-data"] = base64.b64encode(Path(ca_cert).read_bytes()).decode("ascii")
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        "current-context": context,
        "preferences": {},
    }
    if not path.parent.exists():
        private_dir(path.parent)
    write_private(path, yaml.safe_dump(document, sort_keys=False))
    return path
