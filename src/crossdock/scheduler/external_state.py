"""What a sensor's try cannot read itself, looked up when the try is queued (one query per
try): for an ExternalTaskSensor the state of the task (or run) of another DAG it waits
for; for a CeleryQueueSensor how many task instances of its queue are queued or running."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from crossdock.database import create_session
from crossdock.dag.sensors import EXTERNAL_STATE_KEY


def external_state(run: Any, task: Any) -> dict[str, str]:
    """``{EXTERNAL_STATE_KEY: state}`` for a sensor that watches another DAG; {} for any other task."""
    watch = getattr(task, "external_watch", None)
    if watch and "queue" in watch:
        return {EXTERNAL_STATE_KEY: str(held_on_queue(run, task.task_id, watch))}
    if not watch or run.dag_run.logical_date is None:
        return {}
    from crossdock.models import DagRun, TaskInstance

    logical_date = run.dag_run.logical_date - timedelta(seconds=float(watch.get("delta") or 0))
    with create_session() as session:
        other = session.execute(select(DagRun.run_id, DagRun.state).where(
            DagRun.dag_id == watch["dag_id"], DagRun.logical_date == logical_date)).first()
        if other is None:
            return {EXTERNAL_STATE_KEY: ""}
        if not watch.get("task_id"):
            return {EXTERNAL_STATE_KEY: other.state or ""}
        state = session.scalar(select(TaskInstance.state).where(
            TaskInstance.dag_id == watch["dag_id"], TaskInstance.run_id == other.run_id,
            TaskInstance.task_id == watch["task_id"], TaskInstance.map_index == -1))
    return {EXTERNAL_STATE_KEY: state or ""}


def held_on_queue(run: Any, sensor_task_id: str, watch: dict[str, Any]) -> int:
    """Task instances of the watched queue that are queued or running, the sensor's own excepted."""
    from sqlalchemy import and_, func, not_

    from crossdock.models import TaskInstance as TI

    query = select(func.count()).select_from(TI).where(
        TI.queue == watch["queue"], TI.state.in_(("queued", "running")),
        not_(and_(TI.dag_id == run.dag_id, TI.run_id == run.run_id, TI.task_id == sensor_task_id)))
    if watch.get("target_task_id"):
        query = query.where(TI.dag_id == run.dag_id, TI.run_id == run.run_id,
                            TI.task_id == watch["target_task_id"])
    with create_session() as session:
        return session.scalar(query)
