"""``Connection``: how to reach an outside system, as Airflow's ``airflow.models.Connection``.

Attributes and methods keep Airflow's names (``conn_id``, ``conn_type``, ``host``,
``login``, ``password``, ``port``, ``schema``, ``extra``, ``extra_dejson``, ``get_uri()``,
``from_json``), so hooks written for Airflow read them unchanged. A connection is built
from a URI (:mod:`crossdock.secrets.connection_uri`), from Airflow's JSON form
(``{"conn_type": "postgres", "host": ..., "extra": {...}}``) or from fields, and is
checked when built: a bad port, a non-JSON ``extra`` or an unknown field fails at once
with :class:`~crossdock.secrets.errors.InvalidConnection`, naming the connection and the
fault, never the password. Neither ``repr`` nor ``str`` shows the password.

There is no database row behind it: connections come from the secrets backends
(:mod:`crossdock.secrets.backends`), which a try reads without metadata-DB credentials.
"""

from __future__ import annotations

import json
from typing import Any

from crossdock.secrets.connection_uri import EXTRA_KEY, connection_uri, normalize_conn_type, parse_connection_uri
from crossdock.secrets.errors import InvalidConnection

#: The fields of Airflow's JSON form of a connection.
JSON_FIELDS = ("conn_type", "description", "host", "login", "password", "schema", "port", "extra")
_TEXT_FIELDS = ("conn_type", "description", "host", "login", "password", "schema")


class Connection:
    """One connection. Give either ``uri`` or the separate fields.

    :param conn_id: the id tasks ask for (``BaseHook.get_connection(conn_id)``).
    :param conn_type: the kind of system (``postgres``, ``http``, ``aws``); normalised as Airflow does.
    :param port: an int, or a string of digits.
    :param extra: a dict, or a string holding a JSON object.
    :param uri: ``conn_type://login:password@host:port/schema?extra``, parts percent-encoded.
    """

    EXTRA_KEY = EXTRA_KEY

    def __init__(self, conn_id: str | None = None, conn_type: str | None = None, description: str | None = None,
                 host: str | None = None, login: str | None = None, password: str | None = None,
                 schema: str | None = None, port: int | str | None = None, extra: str | dict | None = None,
                 uri: str | None = None):
        fields: dict[str, Any] = {"conn_type": conn_type, "host": host, "login": login, "password": password,
                                  "schema": schema, "port": port, "extra": extra}
        if uri is not None:
            if any(value is not None for value in fields.values()):
                raise InvalidConnection(conn_id, "give either a URI or separate fields (conn_type, host, "
                                                 "login, password, schema, port, extra), not both")
            fields = parse_connection_uri(uri, conn_id=conn_id)
        fields["description"] = description
        for name in _TEXT_FIELDS:
            if fields[name] is not None and not isinstance(fields[name], str):
                raise InvalidConnection(conn_id, f"{name} must be a string, not {type(fields[name]).__name__}")
        self.conn_id = conn_id
        self.conn_type = normalize_conn_type(fields["conn_type"]) if fields["conn_type"] else None
        self.description = fields["description"]
        self.host = fields["host"] or None
        self.login = fields["login"] or None
        self.password = fields["password"] or None
        self.schema = fields["schema"] or None
        self.port = _checked_port(conn_id, fields["port"])
        self.extra = _checked_extra(conn_id, fields["extra"])

    # -- Airflow's reading API ---------------------------------------------------------
    @property
    def extra_dejson(self) -> dict[str, Any]:
        """``extra`` as a dict (empty when there is none)."""
        if not self.extra:
            return {}
        return _extra_object(self.conn_id, self.extra)

    def get_uri(self) -> str:
        """The connection as one URI; ``Connection(uri=c.get_uri())`` equals ``c``."""
        return connection_uri(self)

    def get_password(self) -> str | None:
        return self.password

    def get_extra(self) -> str | None:
        return self.extra

    # -- other forms ---------------------------------------------------------------------
    @classmethod
    def from_json(cls, value: str | dict[str, Any], conn_id: str | None = None) -> "Connection":
        """A connection from Airflow's JSON form (a JSON object text, or the dict itself)."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InvalidConnection(conn_id, f"it is not valid JSON ({exc.msg} at line {exc.lineno} "
                                                 f"column {exc.colno})") from None
        if not isinstance(value, dict):
            raise InvalidConnection(conn_id, f"a JSON connection is an object of {', '.join(JSON_FIELDS)}, "
                                             f"not {type(value).__name__}")
        unknown = sorted(str(name) for name in value if name not in JSON_FIELDS)
        if unknown:
            raise InvalidConnection(conn_id, f"unknown field(s) {', '.join(unknown)}; the fields are "
                                             f"{', '.join(JSON_FIELDS)}")
        return cls(conn_id=conn_id, **value)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the fields that are set, ``extra`` as an object."""
        data = {name: getattr(self, name) for name in JSON_FIELDS if name != "extra"}
        data = {name: value for name, value in data.items() if value is not None}
        if self.extra:
            data["extra"] = self.extra_dejson
        return data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Connection):
            return NotImplemented
        return self.conn_id == other.conn_id and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, as Airflow's is

    def __repr__(self) -> str:
        return f"Connection(conn_id={self.conn_id!r}, conn_type={self.conn_type!r}, host={self.host!r})"

    __str__ = __repr__


def _checked_port(conn_id: str | None, port: Any) -> int | None:
    if port is None or port == "":
        return None
    if isinstance(port, bool) or not isinstance(port, (int, str)):
        raise InvalidConnection(conn_id, f"port must be a number, not {type(port).__name__}")
    if isinstance(port, str):
        if not port.strip().isascii() or not port.strip().isdigit():
            raise InvalidConnection(conn_id, "port must be a number from 0 to 65535")
        port = int(port)
    if not 0 <= port <= 65535:
        raise InvalidConnection(conn_id, "port must be a number from 0 to 65535")
    return port


def _checked_extra(conn_id: str | None, extra: Any) -> str | None:
    if extra is None or extra == "":
        return None
    if isinstance(extra, dict):
        return json.dumps(extra)
    if not isinstance(extra, str):
        raise InvalidConnection(conn_id, f"extra must be a JSON object, not {type(extra).__name__}")
    _extra_object(conn_id, extra)
    return extra


def _extra_object(conn_id: str | None, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidConnection(conn_id, f"extra is not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise InvalidConnection(conn_id, f"extra must be a JSON object, not {type(value).__name__}")
    return value
