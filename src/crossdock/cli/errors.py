"""Errors a command reports as one line (no traceback)."""


class CliError(Exception):
    """Something the user asked for cannot be done; the message says why."""
