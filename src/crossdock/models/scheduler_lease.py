"""The scheduler lease: which scheduler job is the active one, and its fencing token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from crossdock.models.base import Base, UtcDateTime


class SchedulerLease(Base):
    """One row per lease name; the holder renews it, a standby takes it when renewals stop.

    ``token`` grows by one on every change of holder. The active scheduler checks it in
    the same transaction as each of its writes, so a scheduler that was paused while a
    standby took over finds a newer token and writes nothing. ``renewals`` changes on every
    renewal: standbys judge liveness by seeing it change on their own clock, so clock skew
    between machines does not matter.
    """

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    holder_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    token: Mapped[int] = mapped_column(Integer)
    renewals: Mapped[int] = mapped_column(Integer)
    renewed_at: Mapped[datetime] = mapped_column(UtcDateTime)
