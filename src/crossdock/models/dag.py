"""DAGs known to crossdock and their serialized form, written by the DAG processor."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crossdock.models.base import Base, UtcDateTime


class DagModel(Base):
    """One row per DAG id: where it lives and how it is scheduled."""

    __tablename__ = "dag"

    dag_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    fileloc: Mapped[str] = mapped_column(Text)
    is_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    schedule: Mapped[str | None] = mapped_column(String(250), nullable=True)
    catchup: Mapped[bool] = mapped_column(Boolean, default=False)
    start_date: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    max_active_runs: Mapped[int] = mapped_column(Integer, default=16)
    max_active_tasks: Mapped[int] = mapped_column(Integer, default=16)
    tags: Mapped[list | None] = mapped_column(JSON, nullable=True)
    next_dagrun: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_parsed: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class SerializedDagModel(Base):
    """The JSON form of a DAG, which is all the scheduler ever reads of user code."""

    __tablename__ = "serialized_dag"

    dag_id: Mapped[str] = mapped_column(String(250), primary_key=True)
    fileloc: Mapped[str] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON)
    dag_hash: Mapped[str] = mapped_column(String(64))
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime)
