"""``var`` and ``conn`` in a try's context, for templates and callables, as Airflow's.

``{{ var.value.my_key }}``, ``{{ var.json.my_dict.field }}``,
``{{ var.value.get('my_key', 'fallback') }}``, ``{{ conn.my_db.host }}``,
``{{ conn.get('my_db') }}``; in a callable ``context["var"].value.my_key``. Keys that are
not Python names (``my-key``) read with brackets: ``{{ var.value['my-key'] }}``.

Both are lazy: building them reads nothing, so a try whose templates use neither pays
nothing; each access reads the backends then (files are cached by modification time,
see :mod:`crossdock.secrets.secret_files`). A missing Variable raises Airflow's
``KeyError`` (:class:`~crossdock.secrets.errors.VariableNotFound`), a missing connection
:class:`~crossdock.secrets.errors.ConnectionNotFound`, each saying where it looked.
Names starting with ``_`` are never looked up (Jinja's sandbox refuses them anyway, and
Python probes objects for ``__html__`` and the like).
"""

from __future__ import annotations

from typing import Any

#: Stands for "no default given" until the Variable module (and its own marker) is loaded.
_NO_DEFAULT: Any = object()


class _VariableValues:
    """``var.value`` (text) or ``var.json`` (parsed JSON)."""

    __slots__ = ("_deserialize_json",)

    def __init__(self, deserialize_json: bool):
        self._deserialize_json = deserialize_json

    def get(self, key: str, default_var: Any = _NO_DEFAULT) -> Any:
        """The Variable, or ``default_var`` when it does not exist (without one: KeyError)."""
        from crossdock.secrets.variable import Variable

        if default_var is _NO_DEFAULT:
            return self[key]
        return Variable.get(key, default_var=default_var, deserialize_json=self._deserialize_json)

    def __getitem__(self, key: str) -> Any:
        from crossdock.secrets.variable import Variable

        return Variable.get(key, deserialize_json=self._deserialize_json)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        return self[key]

    def __repr__(self) -> str:
        return "var.json" if self._deserialize_json else "var.value"


class VariableAccessor:
    """``context["var"]``: ``.value`` reads Variables as text, ``.json`` as parsed JSON."""

    __slots__ = ("value", "json")

    def __init__(self) -> None:
        self.value = _VariableValues(False)
        self.json = _VariableValues(True)

    def __repr__(self) -> str:
        return "var"


class ConnectionAccessor:
    """``context["conn"]``: ``conn.<conn_id>`` or ``conn.get(conn_id, default_conn=None)``."""

    __slots__ = ()

    def get(self, conn_id: str, default_conn: Any = None) -> Any:
        from crossdock.secrets.backends import get_connection
        from crossdock.secrets.errors import ConnectionNotFound

        try:
            return get_connection(conn_id)
        except ConnectionNotFound:
            return default_conn

    def __getitem__(self, conn_id: str) -> Any:
        from crossdock.secrets.backends import get_connection

        return get_connection(conn_id)

    def __getattr__(self, conn_id: str) -> Any:
        if conn_id.startswith("_"):
            raise AttributeError(conn_id)
        return self[conn_id]

    def __repr__(self) -> str:
        return "conn"
