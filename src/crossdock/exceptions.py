"""The one root of the errors crossdock raises on purpose.

Two kinds hang from it. A :class:`UserFacingError` is something the person at the
keyboard can fix (a bad config value, a DAG id that does not exist, a database that
cannot be reached): its message is one complete sentence, and the CLI prints it as one
line and exits 1, catching the base instead of a hand-kept list of classes. Every other
:class:`CrossdockError` is for the code that called: it is caught where it is
expected, and anything that escapes is a bug worth its traceback.

This module imports nothing of crossdock, so every package may depend on it.
"""

from __future__ import annotations


class CrossdockError(Exception):
    """Base of every error crossdock raises on purpose."""


class UserFacingError(CrossdockError):
    """An error whose message tells a user what to fix; shown without a traceback."""
