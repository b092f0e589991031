"""Server-side printing of pods as a ``meta.k8s.io/v1`` Table, which kubectl asks for.

Without it kubectl falls back to NAME and AGE only; with it ``kubectl get pods`` shows
READY, STATUS and RESTARTS computed the way the real API server computes them.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

TABLE_MARKER = "as=Table"

def _column(name: str, description: str, *, type: str = "string", format: str = "",  # noqa: A002
            priority: int = 0) -> dict[str, Any]:
    """One ``columnDefinitions`` entry; priority 1 columns show with ``-o wide`` only."""
    return {"name": name, "type": type, "format": format, "priority": priority, "description": description}


POD_COLUMNS = [
    _column("Name", "Name must be unique within a namespace.", format="name"),
    _column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _column("Status", "The aggregate status of the containers in this pod."),
    _column("Restarts", "The number of times the containers in this pod have been restarted.", type="integer"),
    _column("Age", "CreationTimestamp is a timestamp representing the server time when this object was created."),
    _column("IP", "IP address allocated to the pod.", priority=1),
    _column("Node", "NodeName is a request to schedule this pod onto a specific node.", priority=1),
    _column("Nominated Node", "nominatedNodeName is set when this pod preempts other pods on the node.", priority=1),
    _column("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", priority=1),
]


def wants_table(accept: str | None) -> bool:
    return bool(accept) and TABLE_MARKER in accept and "g=meta.k8s.io" in accept


def human_age(created: str | None, now: float | None = None) -> str:
    """The age column as kubectl words it (``42s``, ``3m12s``, ``5h``, ``2d3h``)."""
    if not created:
        return "<unknown>"
    seconds = int((now or time.time()) - calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")))
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def pod_status_text(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for container in reversed(status.get("containerStatuses") or []):
        state = container.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            terminated = state["terminated"] or {}
            if terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Signal:{terminated['signal']}"
            else:
                reason = f"ExitCode:{terminated.get('exitCode', 0)}"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def pod_row(pod: dict[str, Any]) -> dict[str, Any]:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    cells = [meta.get("name"), f"{ready}/{len(spec.get('containers') or [])}", pod_status_text(pod), restarts,
             human_age(meta.get("creationTimestamp")), status.get("podIP") or "<none>",
             spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", "<none>"]
    partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    return {"cells": cells, "object": partial}


def pods_table(pods: list[dict[str, Any]], *, resource_version: str, continue_token: str | None = None
               ) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": POD_COLUMNS, "rows": [pod_row(pod) for pod in pods]}
