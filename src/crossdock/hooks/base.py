"""``BaseHook``, as ``airflow.hooks.base.BaseHook``: the base of hooks, and where they get connections.

``BaseHook.get_connection(conn_id)`` reads the secrets backends (environment, then the
connections file; see :mod:`crossdock.secrets.backends`) — never the metadata database,
which tries have no credentials for — and masks the connection's password in the try's
log from then on. A hook written for Airflow that subclasses ``BaseHook`` and calls
``self.get_connection(self.conn_id)`` runs unchanged with its import switched.
"""

from __future__ import annotations

import logging
from typing import Any

from crossdock.secrets.connection import Connection


class BaseHook:
    """Base of hooks. Subclasses set ``conn_name_attr``/``default_conn_name`` as Airflow's do
    and implement :meth:`get_conn`.

    :param logger_name: the logger :attr:`log` uses; the subclass's module and name by default.
    """

    conn_name_attr: str | None = None
    default_conn_name: str = "default_conn_id"
    conn_type: str | None = None
    hook_name: str | None = None

    def __init__(self, logger_name: str | None = None):
        self._logger_name = logger_name

    @property
    def log(self) -> logging.Logger:
        cls = type(self)
        return logging.getLogger(self._logger_name or f"{cls.__module__}.{cls.__name__}")

    @classmethod
    def get_connection(cls, conn_id: str) -> Connection:
        """The connection ``conn_id``; :class:`~crossdock.secrets.errors.ConnectionNotFound`
        (naming where it looked) when no backend defines it."""
        from crossdock.secrets.backends import get_connection

        return get_connection(conn_id)

    def get_conn(self) -> Any:
        """A client of the system the hook talks to; each hook says what that is."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_conn()")
