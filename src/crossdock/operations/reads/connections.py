"""Connections as listed and shown, and the secrets every log read masks.

A listing never carries a password (Airflow's API treats it as write-only) and shows a
secret-named ``extra`` value as ``***``. :func:`register_known_secrets` hands every
connection's password and secret extras, and every secret-named Variable's value, to the
masker (:mod:`crossdock.secrets.masking`), so a log read shows ``***`` even where the try
wrote a secret past Python's streams (a ``bash`` ``echo``, a subprocess).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from crossdock.operations.errors import NotFound
from crossdock.operations.reads.paging import DEFAULT_LIMIT, checked_page
from crossdock.secrets.errors import SecretsError
from crossdock.secrets.masking import MASK, is_sensitive_name, mask_secret

log = logging.getLogger("crossdock.operations")

#: Seconds between re-reads of the connections and Variables whose secrets logs mask.
SECRETS_REFRESH_SECONDS = 30.0

_refreshed_at: float | None = None
_refresh_lock = threading.Lock()


def _all_connections() -> list[tuple[str, Any, str]]:
    from crossdock.secrets.backends import file_backend, listing
    from crossdock.secrets.environment import EnvironmentBackend

    return listing(EnvironmentBackend().connections(), file_backend().connections())


def _all_variables() -> list[tuple[str, Any, str]]:
    from crossdock.secrets.backends import file_backend, listing
    from crossdock.secrets.environment import EnvironmentBackend

    return listing(EnvironmentBackend().variables(), file_backend().variables())


def register_known_secrets(*, max_age: float = SECRETS_REFRESH_SECONDS) -> None:
    """Register the secrets of every connection and Variable, at most every ``max_age`` seconds.

    A secrets file that cannot be read is logged and skipped: tries cannot read it
    either, and the secrets registered before stay registered.
    """
    global _refreshed_at
    with _refresh_lock:
        now = time.monotonic()
        if _refreshed_at is not None and now - _refreshed_at < max_age:
            return
        _refreshed_at = now
        try:
            for _conn_id, conn, _source in _all_connections():
                mask_secret(conn.password)
                if conn.extra:
                    mask_secret(conn.extra_dejson, name="extra")
            for key, value, _source in _all_variables():
                mask_secret(_json_or_text(value), name=key)
        except (SecretsError, OSError, ValueError) as exc:
            log.warning("could not read every connection and Variable to mask them in logs: %s", exc)


def _json_or_text(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def connection_dict(conn: Any, source: str) -> dict[str, Any]:
    """Airflow's ``Connection`` fields without the password; secret extras as ``***``."""
    extra = {key: MASK if is_sensitive_name(key) else value for key, value in conn.extra_dejson.items()}
    return {"connection_id": conn.conn_id, "conn_type": conn.conn_type, "description": conn.description,
            "host": conn.host, "login": conn.login, "schema": conn.schema, "port": conn.port,
            "extra": json.dumps(extra) if extra else None, "has_password": bool(conn.password),
            "source": source}


def list_connections(*, limit: int = DEFAULT_LIMIT, offset: int = 0) -> dict[str, Any]:
    """``{"connections": [...], "total_entries": N}`` by connection id, from the environment and the file."""
    limit, offset = checked_page(limit, offset)
    rows = _all_connections()
    return {"connections": [connection_dict(conn, source) for _, conn, source in rows[offset:offset + limit]],
            "total_entries": len(rows)}


def get_connection(conn_id: str) -> dict[str, Any]:
    from crossdock.secrets.backends import connection_places, find_connection

    found = find_connection(conn_id)
    if found is None:
        raise NotFound(f"connection {conn_id!r} is not defined: looked in {connection_places(conn_id)}")
    conn, backend = found
    return connection_dict(conn, backend.name)
