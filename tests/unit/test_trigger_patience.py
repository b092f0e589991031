"""A trigger (any action) waits out a PostgreSQL that refuses connections for load, and nothing else.

The refusal (``FATAL: sorry, too many clients already``) needs a server at its
``max_connections``, which a test cannot arrange without starving everything else on
the machine, so the attempt here raises the error SQLAlchemy raises for it.
"""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from crossdock.operations import db_retry


def _refused() -> OperationalError:
    return OperationalError("connect", {}, Exception(
        'connection to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already'))


def test_a_refused_connection_is_tried_again_until_it_is_accepted(monkeypatch):
    monkeypatch.setattr(db_retry.time, "sleep", lambda _seconds: None)
    calls = []

    def attempt():
        calls.append(1)
        if len(calls) < 4:
            raise _refused()
        return "manual__x"

    assert db_retry.patiently(attempt) == "manual__x"
    assert len(calls) == 4


def test_other_database_errors_are_not_retried(monkeypatch):
    monkeypatch.setattr(db_retry.time, "sleep", lambda _seconds: None)
    calls = []

    def attempt():
        calls.append(1)
        raise OperationalError("insert", {}, Exception("disk I/O error"))

    with pytest.raises(OperationalError, match="disk I/O error"):
        db_retry.patiently(attempt)
    assert len(calls) == 1


def test_patience_ends_with_the_refusal(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(db_retry.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(db_retry.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))

    def attempt():
        raise _refused()

    with pytest.raises(OperationalError, match="too many clients"):
        db_retry.patiently(attempt)
    assert clock[0] <= db_retry.PATIENCE
