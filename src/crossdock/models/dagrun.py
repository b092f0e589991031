"""DAG runs: one execution of a DAG for one logical date or manual trigger."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crossdock.models.base import Base, UtcDateTime


class DagRun(Base):
    __tablename__ = "dag_run"
    __table_args__ = (
        UniqueConstraint("dag_id", "run_id"),
        Index("ix_dag_run_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    run_type: Mapped[str] = mapped_column(String(50))  # "manual" | "scheduled"
    logical_date: Mapped[datetime] = mapped_column(UtcDateTime)
    data_interval_start: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    data_interval_end: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    state: Mapped[str] = mapped_column(String(50))
    queued_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    start_date: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    end_date: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    conf: Mapped[dict | None] = mapped_column(JSON, nullable=True)
