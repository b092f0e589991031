"""Task instances: one task of one DAG run, with the state of its latest try."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crossdock.models.base import Base, UtcDateTime
from crossdock.models.taskinstancekey import TaskInstanceKey


#: Columns a new task instance is inserted with (a run's start, a mapped task's expansion).
NEW_TI_COLUMNS = ("dag_id", "task_id", "run_id", "map_index", "try_number", "max_tries", "state",
                  "queue", "pool", "pool_slots", "priority_weight", "executor", "executor_config",
                  "stuck_in_queued_count")


class TaskInstance(Base):
    """Only the active scheduler writes these rows (design principle 1); while none holds the
    lease, a user's clear or mark writes them under it (see ``crossdock.operations.state_delivery``)."""

    __tablename__ = "task_instance"
    __table_args__ = (
        UniqueConstraint("dag_id", "task_id", "run_id", "map_index"),
        Index("ix_task_instance_state", "state"),
        Index("ix_task_instance_dag_run", "dag_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    task_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    map_index: Mapped[int] = mapped_column(Integer, default=-1)
    try_number: Mapped[int] = mapped_column(Integer, default=0)
    max_tries: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str | None] = mapped_column(String(20), nullable=True)
    queue: Mapped[str] = mapped_column(String(256), default="default")
    pool: Mapped[str] = mapped_column(String(256), default="default_pool")
    pool_slots: Mapped[int] = mapped_column(Integer, default=1)
    priority_weight: Mapped[int] = mapped_column(Integer, default=1)
    executor: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    external_executor_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    queued_by_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    executor_config: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    hostname: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    queued_dttm: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    start_date: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    end_date: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    next_retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    stuck_in_queued_count: Mapped[int] = mapped_column(Integer, default=0)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Why the scheduler sent the task to its executor: the task's ``executor=``, the
    #: ``[executor_routing]`` rule or hybrid queue that matched, or the default.
    routing_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def key(self) -> TaskInstanceKey:
        return TaskInstanceKey(self.dag_id, self.task_id, self.run_id, self.try_number, self.map_index)

    def __repr__(self) -> str:
        return (f"<TaskInstance {self.dag_id}.{self.task_id} {self.run_id} "
                f"map_index={self.map_index} try={self.try_number} state={self.state}>")
