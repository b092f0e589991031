"""The web server's ASGI application: the REST API under ``/api/v1`` and the UI under ``/``.

The OpenAPI document is at ``/api/v1/openapi.json`` (made from the routes by FastAPI,
with the one error shape of :mod:`.errors` on every operation). FastAPI's interactive
docs pages are off: they load scripts from the internet, which the UI's
Content-Security-Policy forbids.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from crossdock.www import api_crossdock, api_dags, api_misc, api_pools, api_runs, api_task_instances
from crossdock.www.access import caller
from crossdock.www.auth import Authenticator
from crossdock.www.errors import document_errors, install_error_handlers
from crossdock.www.request_guard import RequestGuard
from crossdock.www.ui import install_ui

API_PREFIX = "/api/v1"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"
DEFAULT_HOST = "127.0.0.1"
SECURITY_SCHEMES = {"Basic": {"type": "http", "scheme": "basic"},
                    "Bearer": {"type": "http", "scheme": "bearer",
                               "description": "a token from POST /api/v1/crossdock/session"}}


@asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    monitor = getattr(app.state, "queue_monitor", None)
    if monitor is not None and app.state.owns_queue_monitor:
        monitor.stop()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crossdock")
    except PackageNotFoundError:
        return "0"


def create_app(*, authenticator: Authenticator | None = None, listen_host: str = DEFAULT_HOST,
               queue_monitor: Any = None) -> FastAPI:
    """The application.

    :param authenticator: who may call (default: from ``[webserver] auth_users``).
    :param listen_host: the address the server listens on (accepted in ``Host`` when sign-in is off).
    :param queue_monitor: a started queue monitor to show (``crossdock standalone`` shares its
        autoscaler's); default: one started on the first queues request, stopped with the app.
    """
    auth = authenticator if authenticator is not None else Authenticator.from_conf()
    app = FastAPI(title="crossdock", version=_version(), openapi_url=OPENAPI_URL, docs_url=None, redoc_url=None,
                  lifespan=_lifespan,
                  description="crossdock's REST API: Airflow 2's stable REST API paths and fields where "
                              "Airflow has them, crossdock's own under /api/v1/crossdock.")
    app.state.authenticator = auth
    app.state.queue_monitor = queue_monitor
    app.state.owns_queue_monitor = queue_monitor is None
    install_error_handlers(app)
    public = APIRouter(prefix=API_PREFIX)
    for router in (api_misc.public_router, api_crossdock.public_router):
        public.include_router(router)
    protected = APIRouter(prefix=API_PREFIX, dependencies=[Depends(caller)])
    for router in (api_dags.router, api_runs.router, api_task_instances.router, api_pools.router,
                   api_pools.crossdock_router, api_misc.router, api_crossdock.router):
        protected.include_router(router)
    app.include_router(public)
    app.include_router(protected)
    install_ui(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            schema["security"] = [{"Basic": []}, {"Bearer": []}]
            app.openapi_schema = document_errors(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(RequestGuard, auth_enabled=auth.enabled, listen_host=listen_host)
    return app
