"""A run's task instances: list, show, a try's log, clear and mark (Airflow's paths and bodies).

Clearing and marking go through :mod:`crossdock.operations`, which writes them at once
when no scheduler is active and otherwise as requests the active scheduler applies in its
next loop step (design principle 1); each reference answered says which (``applied``).
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse

from crossdock.operations import clear_task_instances, mark_task_instances
from crossdock.operations.reads import logs as log_reads
from crossdock.operations.reads import runs as run_reads
from crossdock.operations.reads import task_instances as reads
from crossdock.operations.reads.paging import DEFAULT_LIMIT
from crossdock.www.errors import ApiError
from crossdock.www.params import MAX_INT, Limit, MapIndex, Offset, States, iso_datetime
from crossdock.www.schemas import (ClearTaskInstances, LogChunk, TaskInstance, TaskInstanceCollection,
                                   TaskInstancePatch, TaskInstanceReference, TaskInstanceReferenceCollection)

router = APIRouter(tags=["TaskInstance"])
RUN = "/dags/{dag_id}/dagRuns/{dag_run_id}"


class TaskInstanceMarked(TaskInstanceReference):
    task_instances: list[TaskInstanceReference] = []


@router.get(RUN + "/taskInstances", response_model=TaskInstanceCollection,
            summary="List a run's task instances (~ for dag_id or dag_run_id: all)")
def list_task_instances(dag_id: str, dag_run_id: str, limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
                        state: States = None, queue: Annotated[Optional[list[str]], Query()] = None,
                        task_ids: Annotated[Optional[list[str]], Query()] = None):
    return reads.list_task_instances(dag_id, dag_run_id, limit=limit, offset=offset, state=state, queue=queue,
                                     task_ids=task_ids)


@router.get(RUN + "/taskInstances/{task_id}/listMapped", response_model=TaskInstanceCollection,
            summary="List the instances of a mapped task")
def list_mapped(dag_id: str, dag_run_id: str, task_id: str, limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
                state: States = None):
    return reads.list_task_instances(dag_id, dag_run_id, limit=limit, offset=offset, state=state, task_ids=[task_id])


@router.get(RUN + "/taskInstances/{task_id}", response_model=TaskInstance, summary="Get a task instance")
def get_task_instance(dag_id: str, dag_run_id: str, task_id: str):
    return reads.get_task_instance(dag_id, dag_run_id, task_id)


@router.get(RUN + "/taskInstances/{task_id}/{map_index}", response_model=TaskInstance,
            summary="Get one instance of a mapped task")
def get_mapped_task_instance(dag_id: str, dag_run_id: str, task_id: str,
                             map_index: Annotated[int, Path(ge=-1, le=MAX_INT)]):
    return reads.get_task_instance(dag_id, dag_run_id, task_id, map_index=map_index)


@router.get(RUN + "/taskInstances/{task_id}/logs/{task_try_number}", response_model=LogChunk,
            summary="Read a try's log from an offset (follow a running try with the continuation token)",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def get_log(request: Request, dag_id: str, dag_run_id: str, task_id: str,
            task_try_number: Annotated[int, Path(ge=0, le=MAX_INT)], map_index: MapIndex = -1,
            token: Annotated[Optional[str], Query(max_length=20, pattern=r"^\d*$",
                                                  description="a previous answer's continuation_token")] = None,
            full_content: bool = False):
    offset = int(token) if token and not full_content else 0
    chunk = log_reads.read_task_log(dag_id, dag_run_id, task_id, try_number=task_try_number, map_index=map_index,
                                    offset=min(offset, MAX_INT))
    accept = request.headers.get("accept", "")
    if "text/plain" in accept and "application/json" not in accept:
        return PlainTextResponse(chunk["content"])
    return chunk


def _references(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Action rows as Airflow's task instance references (with the run's logical date)."""
    dates: dict[tuple[str, str], Any] = {}
    for row in rows:
        key = (row["dag_id"], row["run_id"])
        if key not in dates:
            dates[key] = run_reads.get_dag_run(*key)["logical_date"]
    return [{**row, "dag_run_id": row["run_id"], "execution_date": dates[(row["dag_id"], row["run_id"])]}
            for row in rows]


@router.post("/dags/{dag_id}/clearTaskInstances", response_model=TaskInstanceReferenceCollection,
             summary="Clear task instances so they run again (dry_run, the default, only lists them)")
def clear(dag_id: str, body: ClearTaskInstances):
    rows = clear_task_instances(
        dag_id, task_ids=body.task_ids or None, run_id=body.dag_run_id or None,
        start_date=iso_datetime(body.start_date, what="start_date"),
        end_date=iso_datetime(body.end_date, what="end_date"), downstream=body.include_downstream,
        upstream=body.include_upstream, only_failed=body.only_failed, only_running=body.only_running,
        include_past=body.include_past, include_future=body.include_future, dry_run=body.dry_run)
    return {"task_instances": _references(rows)}


@router.patch(RUN + "/taskInstances/{task_id}", response_model=TaskInstanceMarked,
              summary="Mark a task instance success or failed (its running try is stopped)")
def mark(dag_id: str, dag_run_id: str, task_id: str, body: TaskInstancePatch):
    return _mark(dag_id, dag_run_id, task_id, body, map_indexes=None)


@router.patch(RUN + "/taskInstances/{task_id}/{map_index}", response_model=TaskInstanceMarked,
              summary="Mark one element of a mapped task success or failed")
def mark_mapped(dag_id: str, dag_run_id: str, task_id: str, map_index: Annotated[int, Path(ge=-1, le=MAX_INT)],
                body: TaskInstancePatch):
    return _mark(dag_id, dag_run_id, task_id, body, map_indexes=[map_index])


def _mark(dag_id: str, dag_run_id: str, task_id: str, body: TaskInstancePatch, *, map_indexes: list[int] | None):
    if body.dry_run:
        raise ApiError(400, "dry_run is not offered for marking; read the task instance instead")
    rows = _references(mark_task_instances(dag_id, run_id=dag_run_id, task_ids=[task_id], state=body.new_state,
                                           downstream=body.include_downstream, upstream=body.include_upstream,
                                           past=body.include_past, future=body.include_future,
                                           map_indexes=map_indexes))
    named = next((row for row in rows if row["task_id"] == task_id), None)
    if named is None:  # it was in that state already (only relatives changed, or nothing)
        named = {"task_id": task_id, "dag_id": dag_id, "dag_run_id": dag_run_id,
                 "execution_date": run_reads.get_dag_run(dag_id, dag_run_id)["logical_date"]}
    return {**named, "task_instances": rows}
