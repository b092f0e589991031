"""The scheduler's side of each queue, read from the metadata database in one query.

Read-only (principle 1: the active scheduler stays the only writer), so the CLI, the
autoscaler and a standby may all read it. ``scheduled`` task instances are ready and wait
for a slot; ``queued`` ones were handed to an executor and have not started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from crossdock.state import TaskInstanceState

#: The states that put load on a queue.
LOAD_STATES = (TaskInstanceState.SCHEDULED, TaskInstanceState.QUEUED, TaskInstanceState.RUNNING)


@dataclass
class QueueCounts:
    scheduled: int = 0
    queued: int = 0
    running: int = 0
    oldest_queued_at: datetime | None = None
    #: executor name recorded on the queue's task instances → how many
    executors: dict[str, int] = field(default_factory=dict)


def read_queue_counts() -> dict[str, QueueCounts]:
    """Per queue: how many task instances are scheduled, queued and running, and since when."""
    from crossdock.database import create_session
    from crossdock.models.taskinstance import TaskInstance as TI

    counts: dict[str, QueueCounts] = {}
    query = (select(TI.queue, TI.state, TI.executor, func.count(), func.min(TI.queued_dttm))
             .where(TI.state.in_([str(s) for s in LOAD_STATES]))
             .group_by(TI.queue, TI.state, TI.executor))
    with create_session() as session:
        for queue, state, executor, count, oldest in session.execute(query):
            entry = counts.setdefault(queue, QueueCounts())
            setattr(entry, state, getattr(entry, state) + count)
            if executor:
                entry.executors[executor] = entry.executors.get(executor, 0) + count
            if state != TaskInstanceState.RUNNING and oldest is not None:
                if entry.oldest_queued_at is None or oldest < entry.oldest_queued_at:
                    entry.oldest_queued_at = oldest
    return counts


def queues_dags_use() -> set[str]:
    """Every queue a parsed DAG's task names."""
    from crossdock.database import create_session
    from crossdock.models import SerializedDagModel

    queues: set[str] = set()
    with create_session() as session:
        for data in session.scalars(select(SerializedDagModel.data)):
            for task in (data.get("tasks") or {}).values():
                if task.get("queue"):
                    queues.add(task["queue"])
    return queues
