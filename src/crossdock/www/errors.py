"""Every error the API answers, in one JSON shape: Airflow's ``{"type", "title", "status", "detail"}``.

The status says what happened: 400 a bad request (a bad value, a malformed body —
FastAPI's 422 is answered as 400, as Airflow does), 401 no valid credentials, 403 not
allowed (a viewer acting, a request from another site), 404 an unknown DAG, run, task,
try or pool, 409 a clash with the current state, 503 the database would not answer.
Anything else is a 500 whose detail names no internals (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossdock.exceptions import CrossdockError, UserFacingError
from crossdock.operations.errors import OperationError
from crossdock.www.auth import Unauthenticated

log = logging.getLogger("crossdock.webserver")

PROBLEM_TYPE = "application/problem+json"
#: ``type`` of each status: Airflow's names for its error sections.
ERROR_TYPES = {400: "BadRequest", 401: "Unauthenticated", 403: "PermissionDenied", 404: "NotFound",
               405: "MethodNotAllowed", 409: "AlreadyExists", 500: "Unknown", 503: "ServiceUnavailable"}
#: The error statuses every operation documents in the OpenAPI document.
DOCUMENTED_ERRORS = (400, 401, 403, 404, 405, 409, 500, 503)


class ApiError(CrossdockError):
    """An error a route raises on purpose, with its status."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error response: one shape for every status."""
    body = {"type": f"errors/{ERROR_TYPES.get(status, HTTPStatus(status).phrase.replace(' ', ''))}",
            "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def unauthenticated(detail: str) -> JSONResponse:
    return problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="crossdock"'})


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the one shape (see the module docstring)."""
    from sqlalchemy.exc import DataError, OperationalError

    @app.exception_handler(OperationError)
    async def _operation(request: Request, exc: OperationError) -> JSONResponse:
        return problem(int(getattr(exc, "status", 400)), str(exc))

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.detail)

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(request: Request, exc: Unauthenticated) -> JSONResponse:
        return unauthenticated(str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(400, _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no API route {request.url.path} (see /api/v1/openapi.json)"
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        return problem(400, "a value in the request is not valid for the database (too long, out of range, "
                            "or not text)")

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        from crossdock.database import describe_db_error

        return problem(503, describe_db_error(exc))

    @app.exception_handler(UserFacingError)
    async def _user_facing(request: Request, exc: UserFacingError) -> JSONResponse:
        return problem(500, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem(500, f"the server failed on this request ({type(exc).__name__}); its log has the details")


def problem_schema() -> dict[str, Any]:
    return {"type": "object", "title": "Error", "required": ["type", "title", "status", "detail"],
            "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                           "status": {"type": "integer"}, "detail": {"type": "string"}}}


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the error shape on every operation, 422 replaced by 400."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = problem_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    reference = {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in DOCUMENTED_ERRORS:
                responses.setdefault(str(status), {"description": HTTPStatus(status).phrase, "content": reference})
    return schema
