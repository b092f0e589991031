"""The environment backend: ``CROSSDOCK_VAR_<KEY>`` and ``CROSSDOCK_CONN_<ID>``, read-only.

As Airflow's ``AIRFLOW_VAR_``/``AIRFLOW_CONN_`` variables: the key or id is upper-cased
(``Variable.get("my_key")`` reads ``CROSSDOCK_VAR_MY_KEY``), a Variable's value is taken as
it is, and a connection is a URI or, when it starts with ``{``, Airflow's JSON form.

A try keeps these variables (the runner removes only ``CROSSDOCK__…`` settings it has no
use for, see :mod:`crossdock.config_secrets`): they are how a worker's environment, or a
pod template's ``env``/``envFrom`` of a Kubernetes Secret, hands values to the tasks it
runs. crossdock never copies them into a pod spec itself.
"""

from __future__ import annotations

import os
from typing import Mapping

from crossdock.secrets.connection import Connection
from crossdock.secrets.errors import InvalidConnection

VARIABLE_PREFIX = "CROSSDOCK_VAR_"
CONNECTION_PREFIX = "CROSSDOCK_CONN_"


def variable_env_name(key: str) -> str:
    return f"{VARIABLE_PREFIX}{key.upper()}"


def connection_env_name(conn_id: str) -> str:
    return f"{CONNECTION_PREFIX}{conn_id.upper()}"


def connection_from_text(conn_id: str, text: str, *, source: str) -> Connection:
    """A connection from a URI, or from JSON when the text starts with ``{``."""
    try:
        if text.lstrip().startswith("{"):
            return Connection.from_json(text, conn_id=conn_id)
        return Connection(conn_id=conn_id, uri=text)
    except InvalidConnection as exc:
        raise exc.with_source(source) from None


class EnvironmentBackend:
    """Variables and connections from environment variables; writes are not possible here.

    :param environ: the environment to read (``os.environ`` when None, read at each call).
    """

    name = "environment"
    writable = False

    def __init__(self, environ: Mapping[str, str] | None = None):
        self._environ = environ

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def describe_variable(self, key: str) -> str:
        return f"environment variable {variable_env_name(key)}"

    def describe_connection(self, conn_id: str) -> str:
        return f"environment variable {connection_env_name(conn_id)}"

    def get_variable(self, key: str) -> str | None:
        return self.environ.get(variable_env_name(key))

    def get_connection(self, conn_id: str) -> Connection | None:
        text = self.environ.get(connection_env_name(conn_id))
        if text is None:
            return None
        return connection_from_text(conn_id, text, source=self.describe_connection(conn_id))

    def variables(self) -> dict[str, str]:
        """Every ``CROSSDOCK_VAR_`` variable, by key (lower-cased: the environment keeps no case)."""
        return {name[len(VARIABLE_PREFIX):].lower(): value for name, value in self.environ.items()
                if name.startswith(VARIABLE_PREFIX) and len(name) > len(VARIABLE_PREFIX)}

    def connections(self) -> dict[str, Connection]:
        found = {}
        for name, text in self.environ.items():
            if name.startswith(CONNECTION_PREFIX) and len(name) > len(CONNECTION_PREFIX):
                conn_id = name[len(CONNECTION_PREFIX):].lower()
                found[conn_id] = connection_from_text(conn_id, text, source=f"environment variable {name}")
        return found
