"""``/pools``: slot budgets, listed, created, changed and deleted (Airflow's paths and fields)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from fastapi import APIRouter, Body as BodyParam, Query, Response

from crossdock.operations import delete_pool, export_pools, get_pool, import_pools, list_pools, set_pool
from crossdock.operations.errors import NotFound
from crossdock.operations.reads.paging import DEFAULT_LIMIT, checked_page
from crossdock.www.errors import ApiError
from crossdock.www.params import Limit, Offset
from crossdock.www.schemas import Pool, PoolBody, PoolCollection, PoolPatch

router = APIRouter(tags=["Pool"])
crossdock_router = APIRouter(tags=["crossdock"])


@router.get("/pools", response_model=PoolCollection, summary="List pools with their slots in use")
def pools(limit: Limit = DEFAULT_LIMIT, offset: Offset = 0):
    limit, offset = checked_page(limit, offset)
    every = list_pools()
    return {"pools": every[offset:offset + limit], "total_entries": len(every)}


@router.get("/pools/{pool_name}", response_model=Pool, summary="Get a pool")
def pool(pool_name: str):
    return get_pool(pool_name)


@router.post("/pools", response_model=Pool, summary="Create a pool (409 if it exists)")
def create(body: PoolBody):
    try:
        get_pool(body.name)
    except NotFound:
        return set_pool(body.name, slots=body.slots, description=body.description or "")
    raise ApiError(409, f"pool {body.name!r} exists already; change it with PATCH /api/v1/pools/{body.name}")


@router.patch("/pools/{pool_name}", response_model=Pool, summary="Change a pool's slots or description")
def patch(pool_name: str, body: PoolPatch,
          update_mask: Annotated[Optional[list[str]], Query(description="fields to change: slots, description")]
          = None):
    unknown = sorted(set(update_mask or []) - {"slots", "description", "name", "include_deferred"})
    if unknown:
        raise ApiError(400, f"a pool's slots and description can be changed, not {', '.join(unknown)}")
    if body.name is not None and body.name != pool_name:
        raise ApiError(400, f"a pool cannot be renamed ({pool_name!r} to {body.name!r}); create the new one instead")
    current = get_pool(pool_name)
    wanted = set(update_mask or ["slots", "description"])
    slots = body.slots if body.slots is not None and "slots" in wanted else current["slots"]
    description = body.description if body.description is not None and "description" in wanted \
        else current["description"]
    return set_pool(pool_name, slots=slots, description=description or "")


@router.delete("/pools/{pool_name}", status_code=204, response_class=Response,
               summary="Delete a pool (not default_pool)")
def delete(pool_name: str):
    delete_pool(pool_name)
    return Response(status_code=204)


@crossdock_router.get("/crossdock/pools/export", response_model=dict[str, dict[str, Any]],
                      summary="Every pool as {name: {slots, description}} (what import reads)")
def export():
    return export_pools()


@crossdock_router.post("/crossdock/pools/import", response_model=PoolCollection,
                       summary="Set every pool of {name: {slots, description}}; all or none")
def import_(body: Annotated[dict[str, dict[str, Any]], BodyParam()]):
    imported = import_pools(body)
    return {"pools": imported, "total_entries": len(imported)}
