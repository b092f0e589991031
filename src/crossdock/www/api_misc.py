"""``/health`` and ``/version`` (answered without sign-in, as Airflow does) and ``/connections``."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from fastapi import APIRouter

from crossdock.operations.reads import connections as reads
from crossdock.operations.reads.paging import DEFAULT_LIMIT
from crossdock.www.params import Limit, Offset
from crossdock.www.schemas import Connection, ConnectionCollection, Model

public_router = APIRouter(tags=["Monitoring"])
router = APIRouter(tags=["Connection"])


class Status(Model):
    status: str


class SchedulerStatus(Status):
    latest_scheduler_heartbeat: Optional[datetime]
    job_id: Optional[int] = None


class Health(Model):
    metadatabase: Status
    scheduler: SchedulerStatus


class Version(Model):
    version: str
    git_version: Optional[str]


def _scheduler_health() -> dict:
    from sqlalchemy import select

    from crossdock.database import create_session
    from crossdock.models import Job
    from crossdock.operations import scheduler_status

    status = scheduler_status()
    beat = None
    if status["job_id"] is not None:
        with create_session() as session:
            beat = session.scalar(select(Job.latest_heartbeat).where(Job.id == status["job_id"]))
    return {"status": "healthy" if status["alive"] else "unhealthy", "latest_scheduler_heartbeat": beat,
            "job_id": status["job_id"]}


@public_router.get("/health", response_model=Health, summary="Is the metadata database reachable, is a scheduler alive")
def health():
    from sqlalchemy.exc import SQLAlchemyError

    from crossdock.database import check_connection, ensure_migrated
    from crossdock.exceptions import CrossdockError

    try:
        check_connection()
        ensure_migrated()
        scheduler = _scheduler_health()
        database = "healthy"
    except (SQLAlchemyError, CrossdockError):
        database, scheduler = "unhealthy", {"status": "unhealthy", "latest_scheduler_heartbeat": None}
    return {"metadatabase": {"status": database}, "scheduler": scheduler}


@public_router.get("/version", response_model=Version, summary="crossdock's version")
def version():
    from importlib.metadata import PackageNotFoundError, version as package_version

    try:
        number = package_version("crossdock")
    except PackageNotFoundError:
        number = "unknown"
    return {"version": number, "git_version": None}


@router.get("/connections", response_model=ConnectionCollection,
            summary="List connections (never a password; secret extras as ***)")
def list_connections(limit: Limit = DEFAULT_LIMIT, offset: Offset = 0):
    return reads.list_connections(limit=limit, offset=offset)


@router.get("/connections/{connection_id}", response_model=Connection, summary="Get a connection (no password)")
def get_connection(connection_id: str):
    return reads.get_connection(connection_id)
