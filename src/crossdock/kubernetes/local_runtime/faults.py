"""Test hooks that make the local runtime misbehave on purpose, the way clusters do.

Only tests and benchmarks use these; a client cannot tell an injected failure from a
real one, which is the point: the executor's retry and relist paths get exercised.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

from crossdock.kubernetes.local_runtime.errors import REASONS, ApiError

INJECTED_MESSAGE = "injected failure (crossdock fault hook)"


class AgentHooks(Protocol):
    """What the API's fault endpoint can ask of a node agent running in the same process."""

    def hold_pending(self, hold: bool) -> None: ...

    def kill_pod(self, *, namespace: str, name: str, signal_number: int = 9) -> bool: ...


@dataclass
class _Failure:
    remaining: int
    code: int
    retry_after: int | None
    method: str | None
    path_contains: str | None


class ApiFaults:
    """Failures the API server answers with instead of serving the next matching calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []

    def fail_next(self, *, count: int, code: int = 500, retry_after: int | None = None,
                  method: str | None = None, path_contains: str | None = None) -> None:
        """Fail the next ``count`` calls (optionally only of ``method`` / with ``path_contains``)."""
        with self._lock:
            self._failures.append(_Failure(count, code, retry_after, method.upper() if method else None,
                                           path_contains))

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()

    def take(self, method: str, path: str) -> tuple[ApiError, dict[str, str]] | None:
        with self._lock:
            for failure in self._failures:
                if failure.method and failure.method != method:
                    continue
                if failure.path_contains and failure.path_contains not in path:
                    continue
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                details = {"retryAfterSeconds": failure.retry_after} if failure.retry_after is not None else None
                return ApiError(failure.code, INJECTED_MESSAGE, reason=REASONS.get(failure.code),
                                details=details), headers
        return None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"failNext": [vars(f).copy() for f in self._failures]}
