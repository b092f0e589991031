"""crossdock's own routes under ``/api/v1/crossdock``: queues, a DAG's grid, run progress,
backfill, and signing in and out (the session routes need no credentials to be called)."""

from __future__ import annotations

import threading
from typing import Annotated, Any, Optional

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from crossdock.operations import backfill, run_progress
from crossdock.operations.reads import grid as grid_reads
from crossdock.operations.reads import queues as queue_reads
from crossdock.operations.reads.paging import DEFAULT_LIMIT
from crossdock.www.access import authenticator
from crossdock.www.errors import ApiError
from crossdock.www.params import Limit, Offset, iso_datetime
from crossdock.www.schemas import Body, DagRun, Model

router = APIRouter(prefix="/crossdock", tags=["crossdock"])
public_router = APIRouter(prefix="/crossdock", tags=["crossdock"])
_monitor_lock = threading.Lock()


class QueueCollection(Model):
    queues: list[dict[str, Any]] = Field(description="one QueueStatus per queue (see `crossdock queues -o json`)")
    total_entries: int
    age_seconds: Optional[float] = Field(description="seconds since the numbers were read")


class Grid(Model):
    dag_id: str
    dag_runs: list[DagRun] = Field(description="oldest first; every row's instances align with them")
    groups: dict[str, Any] = Field(description="the task tree: groups and tasks with one cell per run")


class Progress(Model):
    dag_id: str
    run_id: str
    state: str
    total: int
    done: int
    states: dict[str, int]


class BackfillBody(Body):
    start_date: str
    end_date: str
    reset_dagruns: bool = False


class BackfillRuns(Model):
    dag_runs: list[dict[str, Any]]
    total_entries: int


class SignIn(Body):
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)


class Session(Model):
    auth_enabled: bool
    user: Optional[str]
    role: Optional[str]


class Token(Model):
    token: str
    expires_in: float
    user: str
    role: str


def queue_monitor(request: Request):
    """The server's queue monitor, started on first use (reads in the background from then on)."""
    from crossdock.monitoring.queue_monitor import QueueMonitor

    state = request.app.state
    with _monitor_lock:
        if getattr(state, "queue_monitor", None) is None:
            state.queue_monitor = QueueMonitor().start()
            state.owns_queue_monitor = True
    return state.queue_monitor


@router.get("/queues", response_model=QueueCollection,
            summary="Per queue: executor, waiting and running tasks, broker messages, workers, desired workers")
def queues(request: Request, limit: Limit = DEFAULT_LIMIT, offset: Offset = 0):
    return queue_reads.list_queues(monitor=queue_monitor(request), limit=limit, offset=offset)


@router.get("/dags/{dag_id}/grid", response_model=Grid, summary="A DAG's newest runs by its tasks, nested by group")
def grid(dag_id: str, num_runs: Annotated[int, Query(ge=1, le=grid_reads.MAX_GRID_RUNS)]
         = grid_reads.DEFAULT_GRID_RUNS):
    return grid_reads.dag_grid(dag_id, num_runs=num_runs)


@router.get("/dags/{dag_id}/dagRuns/{dag_run_id}/progress", response_model=Progress,
            summary="A run's task instances counted by state")
def progress(dag_id: str, dag_run_id: str):
    return run_progress(dag_id, dag_run_id)


@router.post("/dags/{dag_id}/backfill", response_model=BackfillRuns,
             summary="Queue one run per schedule interval from start_date to end_date (the scheduler runs them)")
def start_backfill(dag_id: str, body: BackfillBody):
    runs = backfill(dag_id, start_date=iso_datetime(body.start_date, what="start_date"),
                    end_date=iso_datetime(body.end_date, what="end_date"), reset_dagruns=body.reset_dagruns,
                    wait=False)
    return {"dag_runs": runs, "total_entries": len(runs)}


@public_router.get("/session", response_model=Session, summary="Whether sign-in is on, and who the token names")
def session(request: Request):
    auth = authenticator(request)
    if not auth.enabled:
        return {"auth_enabled": False, "user": None, "role": None}
    from crossdock.www.auth import Unauthenticated

    try:
        user = auth.user_for(request.headers.get("authorization"))
    except Unauthenticated:
        return {"auth_enabled": True, "user": None, "role": None}
    return {"auth_enabled": True, "user": user.name, "role": user.role}


@public_router.post("/session", response_model=Token, summary="Sign in: a bearer token for a user and password")
def sign_in(request: Request, body: SignIn):
    auth = authenticator(request)
    if not auth.enabled:
        raise ApiError(400, "sign-in is off on this server ([webserver] auth_users is empty): no token is needed")
    return auth.login(body.username, body.password)


@public_router.delete("/session", status_code=204, response_class=Response, summary="Sign out: end the token")
def sign_out(request: Request):
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        authenticator(request).logout(token.strip())
    return Response(status_code=204)
