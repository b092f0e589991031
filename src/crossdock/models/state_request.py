"""Requests to change task instance states, written by users' actions, applied by the scheduler.

Only the active scheduler writes the state of task instances it holds (design principle
1). When a user clears or marks task instances of a run that scheduler is working on,
the operations layer (:mod:`crossdock.operations`) writes one of these rows instead, and
the scheduler applies it in its next loop step, in id order, through the same in-memory
transitions its own decisions take. ``applied_at`` says when; ``outcome`` says what it did.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crossdock.models.base import Base, UtcDateTime

#: The actions a request can ask for: back to be scheduled, or a final state set by hand.
CLEAR = "clear"
MARK_SUCCESS = "success"
MARK_FAILED = "failed"
ACTIONS = (CLEAR, MARK_SUCCESS, MARK_FAILED)


class StateRequest(Base):
    __tablename__ = "state_request"
    __table_args__ = (Index("ix_state_request_applied_at", "applied_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    #: One of :data:`ACTIONS`.
    action: Mapped[str] = mapped_column(String(20))
    #: The task instances it is about: ``[[task_id, map_index], ...]``.
    task_keys: Mapped[list] = mapped_column(JSON)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    applied_by_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: What applying it did, one line (how many task instances changed, or why none).
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
