"""Expanding a mapped task (``.expand``) into one task instance per element.

When a mapped task's upstream tasks allow it to run, its length is worked out from what
the scheduler already holds: a literal list's length (kept in the serialized DAG) or the
length of an upstream's pushed list (the run's values in memory; a mapped upstream gives
the list of its instances' values). Then its placeholder instance (map index -1) becomes
map index 0 and ``n-1`` more are inserted, in one transaction fenced by the lease, and all
``n`` are scheduled. An empty list skips the task; a value that is not a list, or a list
longer than ``[core] max_map_length``, fails it with the reason.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, update

from crossdock.database import create_session
from crossdock.dag.xcom_values import from_json_object
from crossdock.models import TaskInstance
from crossdock.models.base import utcnow
from crossdock.models.taskinstance import NEW_TI_COLUMNS
from crossdock.state import TaskInstanceState as S

if TYPE_CHECKING:
    from crossdock.scheduler.active_run import ActiveRun
    from crossdock.scheduler.leadership import SchedulerLease
    from crossdock.scheduler.task_table import TaskTable

log = logging.getLogger("crossdock.scheduler")

#: Columns copied from the placeholder to each new instance of a mapped task.
INSTANCE_COLUMNS = tuple(column for column in NEW_TI_COLUMNS if column != "map_index")


def pushed_list(run: "ActiveRun", task_id: str, key: str) -> Any:
    """What ``task_id`` pushed under ``key`` (a mapped task: its instances' values in order), or None."""
    by_index = run.values.by_task.get(task_id, {})
    if -1 in by_index:
        text = by_index[-1].get(key)
        return None if text is None else from_json_object(json.loads(text))
    found = [from_json_object(json.loads(by_key[key])) for index, by_key in sorted(by_index.items())
             if key in by_key]
    return found if found else None


def map_length(run: "ActiveRun", task: Any) -> tuple[int | None, str | None]:
    """(number of instances, None), or (None, why it cannot be expanded)."""
    spec = task.mapped
    total = 1
    for name, source in spec["inputs"].items():
        if "length" in source:
            total *= int(source["length"])
            continue
        upstream, key = source["xcom"]
        value = pushed_list(run, upstream, key)
        if value is None:
            return None, f"task {upstream!r} pushed no XCom {key!r} for {task.task_id!r} to map over"
        if not isinstance(value, (list, tuple)):
            return None, (f"{task.task_id!r} maps {name} over the value of task {upstream!r}, which is "
                          f"{type(value).__name__}, not a list")
        if spec["kind"] == "expand_kwargs" and not all(isinstance(item, dict) for item in value):
            return None, f"{task.task_id!r} expands keyword arguments from task {upstream!r}: its list must hold dicts"
        total *= len(value)
    return total, None


class TaskMapping:
    def __init__(self, table: "TaskTable", lease: "SchedulerLease | None" = None, *, max_map_length: int = 1024):
        self.table = table
        self.lease = lease
        self.max_map_length = max_map_length
        #: (run, placeholder instance, length) waiting for the next expansion step.
        self.pending: list[tuple["ActiveRun", TaskInstance, int]] = []

    def ready(self, run: "ActiveRun", ti: TaskInstance, task: Any) -> int:
        """The mapped task may run: settle it now or queue its expansion."""
        now = utcnow()
        length, problem = map_length(run, task)
        if problem is None and length > self.max_map_length:
            problem = f"{task.task_id!r} would have {length} instances, over [core] max_map_length ({self.max_map_length})"
        if problem is not None:
            self.table.set_state(run, ti, S.FAILED, start_date=now, end_date=now, duration=0.0, failure_reason=problem)
            return 1
        if length == 0:
            self.table.set_state(run, ti, S.SKIPPED, start_date=now, end_date=now, duration=0.0,
                                 failure_reason="mapped over an empty list")
            return 1
        if all(pending is not ti for _, pending, _ in self.pending):
            self.pending.append((run, ti, length))
        return 1

    def expand_pending(self) -> int:
        """Write the pending expansions (one transaction), then schedule every new instance."""
        if not self.pending:
            return 0
        pending, created = list(self.pending), []
        with create_session() as session:
            if self.lease is not None:
                self.lease.fence(session)
            for run, ti, length in pending:
                session.execute(update(TaskInstance).where(TaskInstance.id == ti.id).values(map_index=0))
                rows = [{**{column: getattr(ti, column) for column in INSTANCE_COLUMNS}, "map_index": index}
                        for index in range(1, length)]
                ids = session.execute(insert(TaskInstance).returning(TaskInstance.id, sort_by_parameter_order=True),
                                      rows).scalars().all() if rows else []
                created.append((run, ti, rows, ids))
        self.pending.clear()
        for run, ti, rows, ids in created:
            self.table.renumber(run, ti, 0)
            instances = [ti]
            for row, ti_id in zip(rows, ids):
                instance = TaskInstance(**row)
                instance.id = ti_id
                self.table.add_instance(run, instance)
                instances.append(instance)
            for instance in instances:
                self.table.reschedule(run, instance)
            log.info("expanded %s of run %s into %d instances", ti.task_id, run.run_id, len(instances))
        return len(created)
