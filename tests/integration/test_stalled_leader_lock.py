"""A leader paused in the middle of a transaction does not hold its lease row for good.

The active scheduler renews its lease as the first statement of each transaction it
writes in, which locks the lease row until that transaction ends. Frozen mid-transaction
(SIGSTOP, a VM pause), it would keep the row locked and every standby's takeover waiting
on it. PostgreSQL ends a session left idle inside a transaction after a fifth of
``[scheduler] standby_takeover_seconds`` (at least 1 s), so a standby takes over within
the window.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from crossdock import database
from crossdock.database import create_session
from crossdock.scheduler.leadership import SchedulerLease

TAKEOVER_SECONDS = 2.0  # the test run's [scheduler] standby_takeover_seconds (conftest)


def test_a_standby_takes_the_lease_from_a_leader_stalled_inside_a_transaction(postgres_url, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__STANDBY_TAKEOVER_SECONDS", str(TAKEOVER_SECONDS))
    database.dispose_engine()
    database.migrate()
    leader = SchedulerLease(job_id=1, takeover_seconds=TAKEOVER_SECONDS)
    with create_session() as session:
        assert leader.try_acquire(session)

    stalled = Session(database.get_engine())
    leader.fence(stalled)  # the row is now locked, and the leader stops here
    taken = threading.Event()

    def standby() -> None:
        lease = SchedulerLease(job_id=2, takeover_seconds=TAKEOVER_SECONDS)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with create_session() as session:
                if lease.try_acquire(session):
                    taken.set()
                    return
            time.sleep(0.1)

    started = time.monotonic()
    thread = threading.Thread(target=standby, daemon=True)
    thread.start()
    thread.join(35)
    assert taken.is_set(), "the standby never got the lease the stalled leader's transaction locked"
    waited = time.monotonic() - started
    assert waited < 30
    # The stalled leader's session was ended by the server: its transaction wrote nothing.
    with pytest.raises(DBAPIError):
        stalled.commit()
    stalled.close()
