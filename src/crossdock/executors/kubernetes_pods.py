"""What the KubernetesExecutor knows of each try's pod, and how the API server words an error."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes.client.rest import ApiException

from crossdock.models.taskinstancekey import TaskInstanceKey


@dataclass
class PodLaunch:
    """A pod waiting to be created (or re-created after a failed attempt)."""

    key: TaskInstanceKey
    pod: dict[str, Any]
    attempts: int = 0
    not_before: float = 0.0
    last_error: str | None = None
    #: The pod's warm profile when a warm pod may run it (warm pods on, a task command); else None.
    profile: str | None = None


@dataclass
class PodRecord:
    """The pod of one try the executor follows."""

    key: TaskInstanceKey
    name: str
    namespace: str
    command: list[str]
    executor_config: Any = None
    created: bool = False
    reported_running: bool = False
    relaunches: int = 0
    adopted: bool = False


def api_message(exc: ApiException) -> str:
    """The API server's own message for an error (its Status body), else the HTTP reason."""
    try:
        body = json.loads(exc.body) if exc.body else {}
        message = body.get("message") if isinstance(body, dict) else None
    except (TypeError, ValueError):
        message = None
    return f"{exc.status} {message or exc.reason or 'error'}"
