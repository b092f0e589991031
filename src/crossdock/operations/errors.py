"""The errors of users' actions, one hierarchy for every face (CLI, REST API, web UI).

Each carries an HTTP-like ``status`` the REST API answers with; the CLI prints the
message as one line and exits 1, as for any :class:`~crossdock.exceptions.UserFacingError`.
Messages are whole sentences naming the DAG, run, task or pool they are about.
"""

from __future__ import annotations

from crossdock.exceptions import UserFacingError


class OperationError(UserFacingError):
    """An action could not be done; ``status`` says what kind of failure it was."""

    status = 400


class BadRequest(OperationError):
    """The request itself is wrong: a bad date, regex, state or value."""

    status = 400


class NotFound(OperationError):
    """A DAG, run, task or pool that does not exist."""

    status = 404


class Conflict(OperationError):
    """The action clashes with the current state (a taken run id, a run still being worked on)."""

    status = 409


class Unavailable(OperationError):
    """The metadata database would not take the write; trying again later may work."""

    status = 503
