"""A claim on a Celery task id in the result backend: who runs this try, atomically.

With ``task_acks_late`` a message stays unacknowledged while its task runs, so the
broker hands it out again when the worker's connection drops or a Redis visibility
timeout passes, even if the task is still running or already finished elsewhere.
Celery alone would then run the command a second time. A worker therefore writes the
STARTED state for the id only if the id has *no* state yet: Redis ``SET ... NX`` on the
very key Celery keeps the task's state in, or an ``INSERT`` into the result table that
the unique ``task_id`` column rejects. Exactly one delivery wins; every other one reads
the winner's record and stays away from the command.

The same primitive lets the scheduler mark an id REVOKED before any worker started it,
so a message that is delivered late can no longer start the try.

A won claim carries a ``claim`` token. Only the holder of the token may replace the
STARTED record afterwards (:func:`replace_own_claim`): to renew its lease while the try
runs, to write the try's outcome, or to put the record back after a Redis backend came
back empty. Anyone else's record (a REVOKED mark, a "lost" verdict of the scheduler) is
left alone, so the first decision on an id is the one that stands.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from celery import states

#: Seconds a claim lives when the backend has no expiry of its own.
DEFAULT_CLAIM_EXPIRES = 86400


@dataclass(frozen=True)
class Claim:
    """The outcome of trying to claim an id.

    :param won: this caller wrote the state; it may go on.
    :param state: the id's state as found when the claim was lost (``state`` when won).
    :param meta: the winner's meta data (for STARTED: ``hostname`` and ``pid``).
    """

    won: bool
    state: str
    meta: dict[str, Any]


def claim_task(backend: Any, task_id: str, *, state: str = states.STARTED,
               meta: Any = None) -> Claim:
    """Write ``state`` for ``task_id`` unless the id already has a state.

    :param meta: the state's result: a dict for STARTED (``hostname``, ``pid``), an
        exception for REVOKED/FAILURE.

    Backends without an atomic create (rpc, cache, ...) fall back to read-then-write,
    which still stops redeliveries that arrive after the first run began.
    """
    if meta is None:
        meta = {}
    if _is_database_backend(backend):
        return _claim_in_database(backend, task_id, state, meta)
    if _is_redis_backend(backend):
        return _claim_in_redis(backend, task_id, state, meta)
    return _claim_read_then_write(backend, task_id, state, meta)


def new_claim_token() -> str:
    """A token that names one claim, so its holder can tell its record from anyone else's."""
    return uuid.uuid4().hex


#: Replace a Redis task-meta record only when it is missing or is still the STARTED
#: record of the claim named by ARGV[2]; atomic, because Redis runs a script alone.
_REPLACE_OWN_CLAIM_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, record = pcall(cjson.decode, current)
  if not ok or record['status'] ~= 'STARTED' or type(record['result']) ~= 'table'
     or record['result']['claim'] ~= ARGV[2] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
return 1
"""


def replace_own_claim(backend: Any, task_id: str, *, claim: str, state: str, meta: Any) -> bool:
    """Write ``state`` for ``task_id`` if the id holds claim ``claim``'s STARTED record or nothing.

    :param claim: the token of the claim (``meta["claim"]`` of its STARTED record).
    :param meta: the new record's result: a dict for STARTED/SUCCESS, an exception for FAILURE.

    False when someone else decided on the id meanwhile; backend errors propagate.
    """
    if _is_redis_backend(backend):
        key = backend.get_key_for_task(task_id)
        expires = int(backend.expires or DEFAULT_CLAIM_EXPIRES)
        script = backend.client.register_script(_REPLACE_OWN_CLAIM_SCRIPT)
        return bool(script(keys=[key], args=[_encoded_record(backend, task_id, state, meta), claim, expires]))
    if _is_database_backend(backend):
        return _replace_in_database(backend, task_id, claim, state, meta)
    current = backend.get_task_meta(task_id)
    if current.get("status", states.PENDING) != states.PENDING and not _holds(current, claim):
        return False
    backend.store_result(task_id, meta, state)
    return True


def _holds(current: dict[str, Any], claim: str) -> bool:
    result = current.get("result")
    return current.get("status") == states.STARTED and isinstance(result, dict) and result.get("claim") == claim


def _encoded_record(backend: Any, task_id: str, state: str, meta: Any) -> Any:
    record = backend._get_result_meta(result=backend.encode_result(meta, state), state=state,
                                      traceback=None, request=None)
    record["task_id"] = task_id
    return backend.encode(record)


def _replace_in_database(backend: Any, task_id: str, claim: str, state: str, meta: Any) -> bool:
    from sqlalchemy.exc import IntegrityError

    table = backend.task_cls
    session = backend.ResultSession()
    try:
        row = session.query(table).filter(table.task_id == task_id).with_for_update().one_or_none()
        if row is None:
            row = table(task_id)
            row.task_id = task_id
            session.add(row)
        else:
            stored = backend._decode_stored_result(row.result) if row.result is not None else None
            if not _holds({"status": row.status, "result": stored}, claim):
                session.rollback()
                return False
        backend._update_result(row, backend.encode_result(meta, state), state)
        session.commit()
        return True
    except IntegrityError:  # a claim was inserted between our read and write
        session.rollback()
        return False
    finally:
        session.close()


def _is_database_backend(backend: Any) -> bool:
    return hasattr(backend, "ResultSession") and hasattr(backend, "task_cls")


def _is_redis_backend(backend: Any) -> bool:
    try:
        from celery.backends.redis import RedisBackend
    except ImportError:  # the redis client is not installed
        return False
    return isinstance(backend, RedisBackend)


def _claim_in_redis(backend: Any, task_id: str, state: str, meta: Any) -> Claim:
    key = backend.get_key_for_task(task_id)
    expires = backend.expires or DEFAULT_CLAIM_EXPIRES
    if backend.client.set(key, _encoded_record(backend, task_id, state, meta), nx=True, ex=int(expires)):
        return Claim(True, state, meta if isinstance(meta, dict) else {})
    return _lost(backend.get_task_meta(task_id))


def _claim_in_database(backend: Any, task_id: str, state: str, meta: Any) -> Claim:
    from sqlalchemy.exc import IntegrityError

    session = backend.ResultSession()
    try:
        row = backend.task_cls(task_id)
        row.task_id = task_id
        backend._update_result(row, backend.encode_result(meta, state), state)
        session.add(row)
        session.commit()
        return Claim(True, state, meta if isinstance(meta, dict) else {})
    except IntegrityError:
        session.rollback()
    finally:
        session.close()
    return _lost(backend.get_task_meta(task_id))


def _claim_read_then_write(backend: Any, task_id: str, state: str, meta: Any) -> Claim:
    current = backend.get_task_meta(task_id)
    if current.get("status", states.PENDING) != states.PENDING:
        return _lost(current)
    backend.store_result(task_id, meta, state)
    return Claim(True, state, meta if isinstance(meta, dict) else {})


def _lost(current: dict[str, Any]) -> Claim:
    result = current.get("result")
    return Claim(False, current.get("status", states.PENDING), result if isinstance(result, dict) else {})
