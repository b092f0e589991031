"""Errors of Variables, Connections and the files that hold them.

Each is a :class:`~crossdock.exceptions.UserFacingError` (the CLI prints it as one line)
and keeps the builtin base Airflow's callers catch it by: a missing Variable is a
``KeyError``, as ``Variable.get`` raises in Airflow. No message ever holds a secret:
a malformed connection names its id, where it came from and what is wrong, never the
text it was read from.
"""

from __future__ import annotations

from crossdock.exceptions import UserFacingError


class SecretsError(UserFacingError):
    """A Variable or Connection cannot be read or written; the message says why."""


class _NotFound(KeyError, SecretsError):
    def __str__(self) -> str:  # KeyError shows its argument's repr; ours is a sentence
        return str(self.args[0]) if self.args else ""


class VariableNotFound(_NotFound):
    """No backend holds the Variable, and no default was given."""


class ConnectionNotFound(_NotFound):
    """No backend defines the connection id."""


class InvalidConnection(SecretsError, ValueError):
    """A connection's URI, JSON or fields are malformed.

    :param conn_id: the connection's id (None when it has none yet).
    :param problem: what is wrong, in words that never quote the password.
    :param source: where the definition was read (``environment variable CROSSDOCK_CONN_DB``).
    """

    def __init__(self, conn_id: str | None, problem: str, *, source: str | None = None):
        self.conn_id, self.problem, self.source = conn_id, problem, source
        where = f" ({source})" if source else ""
        name = f"connection {conn_id!r}" if conn_id is not None else "a connection"
        super().__init__(f"{name}{where} is malformed: {problem}")

    def with_source(self, source: str) -> "InvalidConnection":
        """The same error, saying where the definition came from."""
        return InvalidConnection(self.conn_id, self.problem, source=source)


class SecretsFileError(SecretsError):
    """A variables or connections file cannot be read, parsed or written."""
