"""One active scheduler, hot standbys: a lease in the metadata database with a fencing token.

Any number of ``crossdock scheduler`` processes may share one metadata database. The
one holding the lease is active: it alone queues tasks and writes task and run state.
The others wait as hot standbys and take the lease when its renewals stop.

Why it is safe without trusting clocks: a standby declares the lease dead only after
seeing its ``renewals`` counter unchanged for ``timeout`` seconds of the standby's own
monotonic clock, measured from when it first saw that value, which is after the
holder sent that renewal. The holder therefore treats its lease as good for
``timeout - margin`` seconds from the moment it *sent* its last successful renewal,
and re-checks before it acts once that has passed. A holder that was paused wakes up,
finds its local validity over, renews, and fails because a standby has taken a newer
token; every write also carries the token check in its own transaction
(:meth:`SchedulerLease.fence`), so a write that raced the takeover rolls back whole.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crossdock.exceptions import CrossdockError
from crossdock.models.base import utcnow
from crossdock.models.scheduler_lease import SchedulerLease as LeaseRow

log = logging.getLogger("crossdock.scheduler.leadership")

#: The one lease every scheduler of a metadata database competes for.
LEASE_NAME = "scheduler"
#: Share of ``standby_takeover_seconds`` after which an unrenewed lease is taken; the rest
#: is the standby's time to start its executors, load the runs and adopt the tries.
TIMEOUT_SHARE = 0.6
#: Share of the timeout the holder keeps in hand: it stops acting this long before a
#: standby could take over, so a slow renewal never overlaps a new holder.
SAFETY_SHARE = 0.25
#: Renewals per timeout period; several, so one slow database round trip is not a loss.
RENEWALS_PER_TIMEOUT = 5
#: Reads of the lease row a writer that is not a scheduler makes while others change it.
FREE_LEASE_ATTEMPTS = 5


_LEASE = LeaseRow.__table__
#: The holder's renewal, built once: it runs in every transaction the active scheduler
#: writes in, so it is a plain Core statement (no ORM session bookkeeping), compiled once.
_RENEW = (update(_LEASE)
          .where(_LEASE.c.name == LEASE_NAME, _LEASE.c.token == bindparam("held_token"),
                 _LEASE.c.holder_job_id == bindparam("job_id"))
          .values(renewals=_LEASE.c.renewals + 1, renewed_at=bindparam("now")))


class LeadershipLost(CrossdockError, RuntimeError):
    """The lease belongs to another scheduler now; this one must stop writing."""


class SchedulerLease:
    """This scheduler job's view of the lease.

    :param job_id: the job row of this scheduler (the lease names its holder by it).
    :param takeover_seconds: ``[scheduler] standby_takeover_seconds``: most time from the
        holder's death to a standby being active.
    """

    def __init__(self, *, job_id: int, takeover_seconds: float):
        self.job_id = job_id
        self.timeout = max(0.5, takeover_seconds * TIMEOUT_SHARE)
        self.renew_every = self.timeout / RENEWALS_PER_TIMEOUT
        self.token: int | None = None
        self._valid_until = 0.0
        self._last_renewal_sent = 0.0
        self._seen: tuple[int | None, int, int] | None = None
        self._seen_since = 0.0

    # ---------------------------------------------------------------- as a standby
    def try_acquire(self, session: Session) -> bool:
        """One standby step: take the lease if it is free or its renewals stopped."""
        sent = time.monotonic()
        row = session.get(LeaseRow, LEASE_NAME)
        if row is None:
            return self._create(session, sent)
        observed = holder, token, renewals = row.holder_job_id, row.token, row.renewals
        if observed != self._seen:
            self._seen, self._seen_since = observed, time.monotonic()
        free = holder is None or holder == self.job_id
        if not free and time.monotonic() - self._seen_since < self.timeout:
            return False
        taken = session.execute(
            update(LeaseRow)
            .where(LeaseRow.name == LEASE_NAME, LeaseRow.token == token, LeaseRow.renewals == renewals)
            .values(holder_job_id=self.job_id, token=token + 1, renewals=0, renewed_at=utcnow())
            .execution_options(synchronize_session=False))
        if taken.rowcount != 1:
            return False
        self._became_holder(token + 1, sent, previous=holder)
        return True

    def _create(self, session: Session, sent: float) -> bool:
        try:
            with session.begin_nested():
                session.execute(insert(LeaseRow).values(name=LEASE_NAME, holder_job_id=self.job_id, token=1,
                                                        renewals=0, renewed_at=utcnow()))
        except IntegrityError:
            return False  # another scheduler created it first
        self._became_holder(1, sent, previous=None)
        return True

    def _became_holder(self, token: int, sent: float, *, previous: int | None) -> None:
        self.token = token
        self._last_renewal_sent = sent
        self._valid_until = sent + self.timeout * (1 - SAFETY_SHARE)
        if previous not in (None, self.job_id):
            log.warning("scheduler job %s took the lease (token %s) from job %s, which stopped renewing it",
                        self.job_id, token, previous)
        else:
            log.info("scheduler job %s holds the lease (token %s)", self.job_id, token)

    # ---------------------------------------------------------------- as the holder
    @property
    def held(self) -> bool:
        """True while this job may act without asking the database again."""
        return self.token is not None and time.monotonic() < self._valid_until

    @property
    def renewal_due(self) -> bool:
        return time.monotonic() - self._last_renewal_sent >= self.renew_every

    def fence(self, session: Session) -> None:
        """Renew the lease inside ``session``'s transaction, or raise :class:`LeadershipLost`.

        Called as the first statement of every transaction the active scheduler writes
        in: the row it updates stays locked until that transaction ends, so a takeover
        waits for it and then finds the renewal, and a write after a takeover rolls back.
        """
        if self.token is None:
            raise LeadershipLost(f"scheduler job {self.job_id} does not hold the lease")
        sent = time.monotonic()
        renewed = session.connection().execute(_RENEW, {"held_token": self.token, "job_id": self.job_id,
                                                        "now": utcnow()})
        if renewed.rowcount != 1:
            lost_token, self.token = self.token, None
            raise LeadershipLost(f"scheduler job {self.job_id} lost the lease (its token {lost_token} is stale)")
        self._last_renewal_sent = sent
        self._valid_until = sent + self.timeout * (1 - SAFETY_SHARE)

    def release(self, session: Session) -> None:
        """Give the lease up on a clean stop so a standby takes over at once."""
        if self.token is None:
            return
        session.execute(update(LeaseRow)
                        .where(LeaseRow.name == LEASE_NAME, LeaseRow.token == self.token,
                               LeaseRow.holder_job_id == self.job_id)
                        .values(holder_job_id=None, renewals=LeaseRow.renewals + 1, renewed_at=utcnow()))
        self.token = None
        self._valid_until = 0.0


def active_job_id(session: Session) -> int | None:
    """The job holding the lease, as recorded (it may have died since its last renewal)."""
    return session.scalar(select(LeaseRow.holder_job_id).where(LeaseRow.name == LEASE_NAME))


def hold_free_lease(session: Session) -> bool:
    """Keep every scheduler from becoming active until ``session``'s transaction ends; False
    when one holds the lease (or takes it first).

    For a writer that is not a scheduler (a user's clear while no scheduler runs): it
    counts a renewal on a lease nobody holds, which locks the lease row for the rest of
    the transaction and spoils the ``renewals`` value a standby read before, so a
    standby's take-over waits, then fails and tries again, and the scheduler that
    becomes active later reads what this transaction wrote. Two such writers at once
    take turns.
    """
    for _ in range(FREE_LEASE_ATTEMPTS):
        row = session.get(LeaseRow, LEASE_NAME, populate_existing=True)
        if row is None:
            try:
                with session.begin_nested():
                    session.execute(insert(LeaseRow).values(name=LEASE_NAME, holder_job_id=None, token=0,
                                                            renewals=0, renewed_at=utcnow()))
            except IntegrityError:
                pass  # a scheduler (or another writer) created it first: read what it wrote
            continue
        if row.holder_job_id is not None:
            return False
        held = session.execute(
            update(LeaseRow)
            .where(LeaseRow.name == LEASE_NAME, LeaseRow.holder_job_id.is_(None), LeaseRow.token == row.token,
                   LeaseRow.renewals == row.renewals)
            .values(renewals=row.renewals + 1, renewed_at=utcnow())
            .execution_options(synchronize_session=False))
        if held.rowcount == 1:
            return True
    return False
