"""The chain Variables and Connections are looked up in, first match wins:

1. the environment (:class:`~crossdock.secrets.environment.EnvironmentBackend`):
   ``CROSSDOCK_VAR_<KEY>``, ``CROSSDOCK_CONN_<ID>``; read-only;
2. the local files (:class:`~crossdock.secrets.local_file.LocalFileBackend`):
   ``[secrets] variables_file`` and ``connections_file``; where writes go.

Neither needs the metadata database, so a try reads both wherever it runs — a forked
LocalExecutor child, a Celery worker, a Kubernetes pod whose template mounts a Secret —
without the database credentials it never gets (design principle 1). The order is
Airflow's (environment before the stored values), so an environment variable shadows a
file entry of the same name.
"""

from __future__ import annotations

from typing import Any

from crossdock.secrets.connection import Connection
from crossdock.secrets.environment import EnvironmentBackend
from crossdock.secrets.errors import ConnectionNotFound
from crossdock.secrets.local_file import LocalFileBackend


def file_backend() -> LocalFileBackend:
    """The writable backend, as the configuration names its files now."""
    return LocalFileBackend.from_conf()


def secrets_backends() -> list[Any]:
    """The lookup chain, built from the configuration as it is now (cheap: nothing is read yet)."""
    return [EnvironmentBackend(), file_backend()]


def _first(method: str, name: str) -> tuple[Any, Any] | None:
    for backend in secrets_backends():
        found = getattr(backend, method)(name)
        if found is not None:
            return found, backend
    return None


def find_variable(key: str) -> tuple[str, Any] | None:
    """``(value, backend)`` of the first backend holding ``key``, or None."""
    return _first("get_variable", key)


def find_connection(conn_id: str) -> tuple[Connection, Any] | None:
    """``(connection, backend)`` of the first backend defining ``conn_id``, or None."""
    return _first("get_connection", conn_id)


def variable_places(key: str) -> str:
    """Where ``key`` was looked for, as a message says it."""
    return " and ".join(backend.describe_variable(key) for backend in secrets_backends())


def connection_places(conn_id: str) -> str:
    return " and ".join(backend.describe_connection(conn_id) for backend in secrets_backends())


def get_connection(conn_id: str) -> Connection:
    """The connection ``conn_id``, its password and secret ``extra`` values masked in the
    try's output from now on; :class:`ConnectionNotFound` naming where it looked if none."""
    from crossdock.secrets.masking import mask_secret

    found = find_connection(conn_id)
    if found is None:
        raise ConnectionNotFound(f"connection {conn_id!r} is not defined: looked in {connection_places(conn_id)}")
    conn = found[0]
    mask_secret(conn.password)
    if conn.extra:
        mask_secret(conn.extra_dejson)
    return conn


def listing(in_environment: dict[str, Any], in_file: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """``(name, value, source)`` of everything the chain holds, sorted by name.

    Environment names are upper-cased on lookup, so a file entry shadowed by one is
    listed once, with the environment's value and ``environment (shadows file)``.
    """
    env_by_upper = {name.upper(): name for name in in_environment}
    rows = []
    for name, value in in_file.items():
        shadow = env_by_upper.pop(name.upper(), None)
        if shadow is None:
            rows.append((name, value, "file"))
        else:
            rows.append((name, in_environment[shadow], "environment (shadows file)"))
    rows.extend((name, in_environment[name], "environment") for name in env_by_upper.values())
    return sorted(rows, key=lambda row: row[0])
