"""Pools: named slot budgets that cap how many task instances of theirs run at once.

``default_pool`` exists from the first migration with ``[core] default_pool_slots``
slots and cannot be deleted (tasks that name no pool use it). A task naming a pool the
scheduler has not seen yet makes it read the pools again before it gives up on the task,
so a pool set just before a trigger is used at once; a change of slots counts within
``POOL_REFRESH_INTERVAL`` (10 s).

Import and export use Airflow's JSON shape: ``{"name": {"slots": N, "description": "…"}}``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from crossdock.database import create_session, ensure_migrated
from crossdock.models import DEFAULT_POOL_NAME, Pool, TaskInstance
from crossdock.operations.errors import BadRequest, NotFound
from crossdock.operations.lookups import known_names
from crossdock.state import TaskInstanceState as S

#: What a pool name may contain (the longest the column holds is 256).
POOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,256}$")


def list_pools() -> list[dict[str, Any]]:
    """Every pool with its slots in use (Airflow's fields: occupied, running, queued, open)."""
    ensure_migrated()
    with create_session() as session:
        pools = list(session.scalars(select(Pool).order_by(Pool.pool)))
        used = _slots_in_use(session)
    return [_pool_dict(pool, used) for pool in pools]


def get_pool(name: str) -> dict[str, Any]:
    ensure_migrated()
    with create_session() as session:
        pool = _find(session, name)
        return _pool_dict(pool, _slots_in_use(session, name))


def set_pool(name: str, *, slots: int, description: str = "") -> dict[str, Any]:
    """Create the pool, or change its slots and description; the pool as stored."""
    _check_name(name)
    slots = _check_slots(name, slots)
    ensure_migrated()
    with create_session() as session:
        pool = session.scalar(select(Pool).where(Pool.pool == name))
        if pool is None:
            pool = Pool(pool=name, slots=slots, description=description or "")
            session.add(pool)
        else:
            pool.slots = slots
            pool.description = description or ""
        session.flush()
        return _pool_dict(pool, _slots_in_use(session, name))


def delete_pool(name: str) -> None:
    """Delete a pool; ``default_pool`` is refused. Tasks still naming it fail until it is set again."""
    if name == DEFAULT_POOL_NAME:
        raise BadRequest(f"{DEFAULT_POOL_NAME} cannot be deleted (tasks that name no pool use it); "
                         f"change its slots with: crossdock pools set {DEFAULT_POOL_NAME} SLOTS DESCRIPTION")
    ensure_migrated()
    with create_session() as session:
        session.delete(_find(session, name))


def import_pools(source: str | Path | dict) -> list[dict[str, Any]]:
    """Set every pool of a JSON file (or of the same shape as a dict); all or none.

    Every entry is checked before any is written, so a bad one leaves the pools as they were.
    """
    data = _read_pools_file(source) if not isinstance(source, dict) else source
    if not isinstance(data, dict):
        raise BadRequest('pools must be a JSON object: {"name": {"slots": N, "description": "..."}}')
    entries = []
    for name, entry in data.items():
        _check_name(name)
        if not isinstance(entry, dict) or "slots" not in entry:
            raise BadRequest(f"pool {name!r}: give an object with \"slots\" (and optionally \"description\")")
        description = entry.get("description") or ""
        if not isinstance(description, str):
            raise BadRequest(f"pool {name!r}: the description must be text")
        entries.append((name, _check_slots(name, entry["slots"]), description))
    ensure_migrated()
    with create_session() as session:
        existing = {pool.pool: pool for pool in session.scalars(select(Pool).where(
            Pool.pool.in_([name for name, _, _ in entries])))}
        for name, slots, description in entries:
            pool = existing.get(name)
            if pool is None:
                session.add(Pool(pool=name, slots=slots, description=description))
            else:
                pool.slots, pool.description = slots, description
    return [get_pool(name) for name, _, _ in entries]


def export_pools() -> dict[str, dict[str, Any]]:
    """Every pool in the shape :func:`import_pools` reads."""
    return {pool["name"]: {"slots": pool["slots"], "description": pool["description"]} for pool in list_pools()}


def _read_pools_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadRequest(f"cannot read pools file {str(path)!r}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"pools file {str(path)!r} is not valid JSON: {exc}") from None


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not POOL_NAME.match(name):
        raise BadRequest(f"pool name {name!r} is not valid: use 1 to 256 letters, digits, '_', '.' or '-'")


def _check_slots(name: str, slots: Any) -> int:
    if isinstance(slots, bool) or not isinstance(slots, (int, str)):
        raise BadRequest(f"pool {name!r}: slots must be a whole number, not {slots!r}")
    try:
        value = int(slots)
    except ValueError:
        raise BadRequest(f"pool {name!r}: slots must be a whole number, not {slots!r}") from None
    if value < 0:
        raise BadRequest(f"pool {name!r}: slots must be 0 or more, not {value}")
    return value


def _find(session, name: str) -> Pool:
    pool = session.scalar(select(Pool).where(Pool.pool == name))
    if pool is None:
        known = list(session.scalars(select(Pool.pool)))
        raise NotFound(f"pool {name!r} does not exist; pools: {known_names(known)}")
    return pool


def _slots_in_use(session, name: str | None = None) -> dict[tuple[str, str], int]:
    """(pool, state) → slots taken by its queued and running task instances."""
    query = (select(TaskInstance.pool, TaskInstance.state, func.sum(TaskInstance.pool_slots))
             .where(TaskInstance.state.in_([S.QUEUED.value, S.RUNNING.value]))
             .group_by(TaskInstance.pool, TaskInstance.state))
    if name is not None:
        query = query.where(TaskInstance.pool == name)
    return {(pool, state): int(total or 0) for pool, state, total in session.execute(query)}


def _pool_dict(pool: Pool, used: dict[tuple[str, str], int]) -> dict[str, Any]:
    running = used.get((pool.pool, S.RUNNING.value), 0)
    queued = used.get((pool.pool, S.QUEUED.value), 0)
    return {"name": pool.pool, "slots": pool.slots, "description": pool.description or "",
            "occupied_slots": running + queued, "running_slots": running, "queued_slots": queued,
            "open_slots": max(0, pool.slots - running - queued)}
