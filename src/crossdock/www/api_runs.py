"""``/dags/{dag_id}/dagRuns``: list, trigger, show and delete runs (``~`` lists every DAG's)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from crossdock.operations import delete_dag_run, trigger_dag
from crossdock.operations.reads import runs as reads
from crossdock.operations.reads.paging import DEFAULT_LIMIT
from crossdock.www.errors import ApiError
from crossdock.www.params import Limit, Offset, States, iso_datetime
from crossdock.www.schemas import DagRun, DagRunCollection, DagRunTrigger

router = APIRouter(tags=["DAGRun"])


@router.get("/dags/{dag_id}/dagRuns", response_model=DagRunCollection, summary="List DAG runs, newest first")
def list_dag_runs(dag_id: str, limit: Limit = DEFAULT_LIMIT, offset: Offset = 0, state: States = None,
                  order_by: Annotated[str, Query(max_length=40, description="field, - first for descending")]
                  = "-logical_date"):
    return reads.list_dag_runs(dag_id, limit=limit, offset=offset, state=state, order_by=order_by)


@router.post("/dags/{dag_id}/dagRuns", response_model=DagRun,
             summary="Trigger a run (it waits in queued while the DAG is paused)")
def trigger(dag_id: str, body: DagRunTrigger):
    if body.logical_date and body.execution_date and body.logical_date != body.execution_date:
        raise ApiError(400, "give logical_date or execution_date (its older name), not two different dates")
    when = iso_datetime(body.logical_date or body.execution_date, what="logical_date")
    run = trigger_dag(dag_id, run_id=body.dag_run_id or None, conf=body.conf, logical_date=when)
    return reads.get_dag_run(dag_id, run["run_id"])


@router.get("/dags/{dag_id}/dagRuns/{dag_run_id}", response_model=DagRun, summary="Get a DAG run")
def get_dag_run(dag_id: str, dag_run_id: str):
    return reads.get_dag_run(dag_id, dag_run_id)


@router.delete("/dags/{dag_id}/dagRuns/{dag_run_id}", status_code=204, response_class=Response,
               summary="Delete a run with its task instances (not while the scheduler works on it)")
def delete_run(dag_id: str, dag_run_id: str):
    delete_dag_run(dag_id, dag_run_id)
    return Response(status_code=204)
