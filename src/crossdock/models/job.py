"""Jobs: long-running crossdock processes (schedulers) and their heartbeats."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from crossdock.models.base import Base, UtcDateTime


class Job(Base):
    """A scheduler's row; a stale ``latest_heartbeat`` marks it dead so others adopt its tasks."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_type: Mapped[str] = mapped_column(String(30))
    state: Mapped[str] = mapped_column(String(20))  # "running" | "success" | "failed"
    hostname: Mapped[str | None] = mapped_column(String(500), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    executor_class: Mapped[str | None] = mapped_column(String(500), nullable=True)
    start_date: Mapped[datetime] = mapped_column(UtcDateTime)
    end_date: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    latest_heartbeat: Mapped[datetime] = mapped_column(UtcDateTime)
