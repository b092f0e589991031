"""Writes the kubeconfig that points kubectl and the official client at the local pods API."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

CONTEXT_NAME = "crossdock-local"


def write_kubeconfig(path: Path | str, *, server: str, namespace: str = "default",
                     context: str = CONTEXT_NAME) -> Path:
    """Write a one-context kubeconfig for ``server`` (plain HTTP on loopback, no credentials)."""
    path = Path(path)
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        "current-context": context,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
