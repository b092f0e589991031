"""``/dags``, ``/dags/{dag_id}``, its tasks and ``/importErrors`` (Airflow's paths and fields)."""

from __future__ import annotations

from typing import Annotated, Optional

from fastapi import APIRouter, Path, Query, Response

from crossdock.operations import delete_dag, set_paused
from crossdock.operations.reads import dags as reads
from crossdock.operations.reads.paging import DEFAULT_LIMIT
from crossdock.www.errors import ApiError
from crossdock.www.params import MAX_INT, Limit, Offset
from crossdock.www.schemas import (DagCollection, DagDetail, DagPatch, ImportError_, ImportErrorCollection,
                                   TaskCollection)

router = APIRouter(tags=["DAG"])


@router.get("/dags", response_model=DagCollection, summary="List DAGs")
def list_dags(limit: Limit = DEFAULT_LIMIT, offset: Offset = 0,
              tags: Annotated[Optional[list[str]], Query(description="DAGs with any of these tags")] = None,
              dag_id_pattern: Annotated[Optional[str], Query(max_length=250)] = None,
              paused: Optional[bool] = None, only_active: bool = True):
    return reads.list_dags(limit=limit, offset=offset, tags=tags, dag_id_pattern=dag_id_pattern, paused=paused,
                           only_active=only_active)


@router.get("/dags/{dag_id}", response_model=DagDetail, summary="Get a DAG")
def get_dag(dag_id: str):
    return reads.get_dag(dag_id)


@router.patch("/dags/{dag_id}", response_model=DagDetail, summary="Pause or unpause a DAG")
def patch_dag(dag_id: str, body: DagPatch,
              update_mask: Annotated[Optional[list[str]], Query(description="fields to change: is_paused")] = None):
    unknown = sorted(set(update_mask or []) - {"is_paused"})
    if unknown:
        raise ApiError(400, f"only is_paused can be changed, not {', '.join(unknown)}")
    set_paused(dag_id, paused=body.is_paused)
    return reads.get_dag(dag_id)


@router.delete("/dags/{dag_id}", status_code=204, response_class=Response,
               summary="Delete a DAG's runs, task instances and stored parse (its file is kept)")
def delete(dag_id: str):
    delete_dag(dag_id)
    return Response(status_code=204)


@router.get("/dags/{dag_id}/tasks", response_model=TaskCollection, summary="List a DAG's tasks")
def list_tasks(dag_id: str, limit: Limit = DEFAULT_LIMIT, offset: Offset = 0):
    return reads.list_tasks(dag_id, limit=limit, offset=offset)


@router.get("/importErrors", response_model=ImportErrorCollection, tags=["ImportError"],
            summary="List DAG files that failed to import, with the error")
def list_import_errors(limit: Limit = DEFAULT_LIMIT, offset: Offset = 0):
    return reads.list_import_errors(limit=limit, offset=offset)


@router.get("/importErrors/{import_error_id}", response_model=ImportError_, tags=["ImportError"],
            summary="Get one import error")
def get_import_error(import_error_id: Annotated[int, Path(ge=0, le=MAX_INT)]):
    return reads.get_import_error(import_error_id)
