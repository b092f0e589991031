"""Read the states of many Celery task ids in one round trip to the result backend.

The scheduler asks for every tracked task on every heartbeat. One request per task
would make that cost grow with the number of running tasks times the network latency,
so each backend gets one bulk read: Redis ``MGET`` over the task-meta keys, one
``SELECT ... WHERE task_id IN (...)`` for a database backend. Other backends fall back
to asking per id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

from celery import states
from celery.backends.base import BaseKeyValueStoreBackend

from crossdock.executors.celery_protocol import read_failure

log = logging.getLogger("crossdock.executors.celery_state_fetcher")

#: Most ids in one SQL ``IN`` list; some databases reject very long lists.
SQL_IN_CHUNK = 1000


@dataclass(frozen=True)
class TaskState:
    """A task id's state and, for failures, a readable reason and whether the try was lost, not failed."""

    state: str
    reason: str | None = None
    meta: Any = None
    infrastructure_loss: bool = False


PENDING = TaskState(states.PENDING)


def fetch_states(backend: Any, task_ids: Iterable[str]) -> dict[str, TaskState]:
    """States of ``task_ids``; ids the backend knows nothing about are PENDING."""
    ids = list(dict.fromkeys(task_ids))
    if not ids:
        return {}
    if hasattr(backend, "ResultSession") and hasattr(backend, "task_cls"):
        return _from_database(backend, ids)
    if isinstance(backend, BaseKeyValueStoreBackend):
        return _from_key_value_store(backend, ids)
    return {task_id: _from_meta(backend, backend.get_task_meta(task_id)) for task_id in ids}


#: The raw value and decoded state of every id of the previous key-value read. Most ids
#: are unchanged between two heartbeats (still PENDING or STARTED), and decoding them
#: again was three quarters of a sync's cost with a thousand tasks in flight.
_previous_reads: dict[str, tuple[bytes, TaskState]] = {}


def _from_key_value_store(backend: Any, ids: list[str]) -> dict[str, TaskState]:
    global _previous_reads
    values = backend.mget([backend.get_key_for_task(task_id) for task_id in ids])
    found: dict[str, TaskState] = {}
    reads: dict[str, tuple[bytes, TaskState]] = {}
    for task_id, value in zip(ids, values):
        if not value:
            found[task_id] = PENDING
            continue
        previous = _previous_reads.get(task_id)
        if previous is not None and previous[0] == value:
            state = previous[1]
        else:
            state = _from_meta(backend, backend.decode_result(value))
        reads[task_id] = (value, state)
        found[task_id] = state
    _previous_reads = reads
    return found


def _from_database(backend: Any, ids: list[str]) -> dict[str, TaskState]:
    table = backend.task_cls
    found = {task_id: PENDING for task_id in ids}
    session = backend.ResultSession()
    try:
        for start in range(0, len(ids), SQL_IN_CHUNK):
            chunk = ids[start:start + SQL_IN_CHUNK]
            rows = (session.query(table.task_id, table.status, table.result)
                    .filter(table.task_id.in_(chunk)).all())
            for task_id, status, raw in rows:
                result = _decode_stored(backend, raw) if raw is not None else None
                found[task_id] = _from_meta(backend, backend.meta_from_decoded(
                    {"status": status, "result": result, "task_id": task_id}))
    finally:
        session.close()
    return found


def _decode_stored(backend: Any, raw: Any) -> Any:
    decode = getattr(backend, "_decode_stored_result", None)
    if decode is not None:
        return decode(raw)
    return backend.decode(raw)


def _from_meta(backend: Any, meta: dict[str, Any]) -> TaskState:
    state = meta.get("status", states.PENDING)
    result = meta.get("result")
    if state in (states.FAILURE, states.REVOKED):
        failure = read_failure(state, result)
        return TaskState(state, reason=failure.reason, meta=result, infrastructure_loss=failure.infrastructure_loss)
    return TaskState(state, meta=result)
