"""API errors carried as Kubernetes ``Status`` objects, worded as the real API server words them.

Clients (the official one, kubectl, the executor) branch on ``code`` and ``reason``; the
messages are copied in form from kube-apiserver v1.20 so logs read the same on both.
"""

from __future__ import annotations

from typing import Any

from crossdock.exceptions import CrossdockError

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(CrossdockError):
    """An error reply; :meth:`status` is the body a real server would send."""

    def __init__(self, code: int, message: str, *, reason: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, f'{kind} "{name}" not found', details={"name": name, "kind": kind})


def already_exists(kind: str, name: str) -> ApiError:
    return ApiError(409, f'{kind} "{name}" already exists', reason="AlreadyExists",
                    details={"name": name, "kind": kind})


def conflict(kind: str, name: str, why: str) -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {kind} "{name}": {why}',
                    details={"name": name, "kind": kind})


def expired(message: str) -> ApiError:
    return ApiError(410, message, reason="Expired")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def invalid(kind: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 with one cause per bad field, as field validation in the real server reports."""
    parts = [f"{cause['field']}: {cause['message']}" for cause in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(422, f'{kind} "{name}" is invalid: {summary}',
                    details={"name": name, "kind": kind, "causes": causes})


def success(code: int = 200) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}
