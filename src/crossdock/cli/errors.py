"""Errors a command reports as one line (no traceback)."""

from crossdock.exceptions import UserFacingError


class CliError(UserFacingError):
    """Something the user asked for cannot be done; the message says why."""
