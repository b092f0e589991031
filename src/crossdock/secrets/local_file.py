"""The local file backend: Variables and Connections in two JSON or YAML files.

``[secrets] variables_file`` (default ``$CROSSDOCK_HOME/variables.json``) maps keys to
values; a value that is not a string is its JSON text (``{"cfg": {"a": 1}}`` reads as
``'{"a": 1}'``, so ``Variable.get("cfg", deserialize_json=True)`` gives the object).
``[secrets] connections_file`` (default ``$CROSSDOCK_HOME/connections.json``) maps ids to
a URI string or to Airflow's JSON form of a connection::

    {"warehouse": "postgresql://etl:pa%40ss@db.internal:5432/dw?sslmode=require",
     "api": {"conn_type": "http", "host": "api.example.com", "password": "t0ken",
             "extra": {"timeout": 30}}}

This is the backend writes go to (``Variable.set``, ``crossdock variables set``,
``crossdock connections add``), atomically and with mode 0600
(:mod:`crossdock.secrets.secret_files`). It needs no server and no database, so a Celery
worker reads the same files as the scheduler's machine when they share a home, and a
Kubernetes pod reads them when its pod template mounts a Secret holding
``variables.json``/``connections.json`` at the configured paths (point
``CROSSDOCK__SECRETS__VARIABLES_FILE`` at the mount, or mount it at
``$CROSSDOCK_HOME``). A mounted Secret is read-only: a pod's ``Variable.set`` fails
with the file's error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from crossdock.secrets.connection import Connection
from crossdock.secrets.environment import connection_from_text
from crossdock.secrets.errors import InvalidConnection, SecretsError
from crossdock.secrets.secret_files import read_mapping, update_mapping

VARIABLES = "variables file"
CONNECTIONS = "connections file"


def variable_text(value: Any) -> str:
    """A stored Variable as the text ``Variable.get`` returns: strings as they are, else JSON."""
    return value if isinstance(value, str) else json.dumps(value)


class LocalFileBackend:
    """Reads and writes the variables and connections files.

    :param variables_file: the variables file; None or "" means there is none (reads find
        nothing, writes fail saying so).
    :param connections_file: the connections file, likewise.
    """

    name = "file"
    writable = True

    def __init__(self, *, variables_file: str | Path | None, connections_file: str | Path | None):
        self.variables_file = Path(variables_file).expanduser() if variables_file else None
        self.connections_file = Path(connections_file).expanduser() if connections_file else None

    @classmethod
    def from_conf(cls) -> "LocalFileBackend":
        from crossdock.configuration import conf

        return cls(variables_file=conf.getstr("secrets", "variables_file"),
                   connections_file=conf.getstr("secrets", "connections_file"))

    # -- where -----------------------------------------------------------------------------
    def describe_variable(self, key: str = "") -> str:
        return f"file {self.variables_file}" if self.variables_file else "no variables file ([secrets] variables_file is empty)"

    def describe_connection(self, conn_id: str = "") -> str:
        return (f"file {self.connections_file}" if self.connections_file
                else "no connections file ([secrets] connections_file is empty)")

    def _required(self, path: Path | None, setting: str) -> Path:
        if path is None:
            raise SecretsError(f"cannot write: [secrets] {setting} is empty, so there is no file to write to")
        return path

    # -- reading ---------------------------------------------------------------------------
    def _variables(self) -> dict[str, Any]:
        return read_mapping(self.variables_file, what=VARIABLES) if self.variables_file else {}

    def _connections(self) -> dict[str, Any]:
        return read_mapping(self.connections_file, what=CONNECTIONS) if self.connections_file else {}

    def get_variable(self, key: str) -> str | None:
        stored = self._variables()
        return variable_text(stored[key]) if key in stored else None

    def variables(self) -> dict[str, str]:
        return {key: variable_text(value) for key, value in self._variables().items()}

    def get_connection(self, conn_id: str) -> Connection | None:
        stored = self._connections()
        return self._connection(conn_id, stored[conn_id]) if conn_id in stored else None

    def connections(self) -> dict[str, Connection]:
        return {conn_id: self._connection(conn_id, value) for conn_id, value in self._connections().items()}

    def _connection(self, conn_id: str, value: Any) -> Connection:
        source = self.describe_connection(conn_id)
        if isinstance(value, str):
            return connection_from_text(conn_id, value, source=source)
        try:
            return Connection.from_json(value, conn_id=conn_id)
        except InvalidConnection as exc:
            raise exc.with_source(source) from None

    # -- writing ---------------------------------------------------------------------------
    def set_variables(self, values: Mapping[str, str]) -> None:
        """Store each key's text, in one write."""
        path = self._required(self.variables_file, "variables_file")
        update_mapping(path, lambda data: data.update(values), what=VARIABLES)

    def delete_variable(self, key: str) -> bool:
        """Remove ``key``; False when the file did not hold it."""
        path = self._required(self.variables_file, "variables_file")
        return update_mapping(path, lambda data: data.pop(key, _ABSENT) is not _ABSENT, what=VARIABLES)

    def add_connection(self, conn: Connection, *, replace: bool = False) -> None:
        """Store ``conn`` in its JSON form; an id already in the file fails unless ``replace``."""
        path = self._required(self.connections_file, "connections_file")

        def add(data: dict[str, Any]) -> None:
            if conn.conn_id in data and not replace:
                raise SecretsError(f"connection {conn.conn_id!r} already exists in {self.describe_connection()}; "
                                   f"delete it first to replace it")
            data[conn.conn_id] = conn.to_dict()

        update_mapping(path, add, what=CONNECTIONS)

    def delete_connection(self, conn_id: str) -> bool:
        path = self._required(self.connections_file, "connections_file")
        return update_mapping(path, lambda data: data.pop(conn_id, _ABSENT) is not _ABSENT, what=CONNECTIONS)


_ABSENT = object()
