"""XCom values on the scheduler's side: kept per active run, stored at a try's success,
cleared at a new try, and handed to each try with its command.

The scheduler is the only writer of the ``xcom`` table (design principle 1). It keeps the
values of every active run in memory (loaded with the run, added from success events),
so handing a try its upstream values costs no query; the pending writes go out with
the next flush, in the transaction that records the states they belong to.

What a try is handed: the values of its upstream tasks (direct or not) in its run,
direct upstreams first, as long as the encoded handover fits one argv word
(:data:`~crossdock.runner.try_inputs.MAX_INPUTS_CHARS`); the tasks whose values did not
fit are named as withheld, so a pull from one fails saying why instead of finding nothing.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from sqlalchemy import and_, delete, insert, select

from crossdock.exceptions import UserFacingError
from crossdock.models.base import utcnow
from crossdock.models.xcom import XCom
from crossdock.runner.context import PREVIOUS_SUCCESS_KEYS
from crossdock.runner.try_inputs import MAX_INPUTS_CHARS, encode_inputs

#: (task_id, map_index) of a task instance within its run.
TaskSlot = tuple[str, int]


class ValueHandoverError(UserFacingError):
    """A try's direct upstream values alone exceed what its command can carry."""


class RunValues:
    """The XComs of one active run, key → XCom text per task instance, and its unwritten changes."""

    def __init__(self) -> None:
        #: task_id → map_index → key → XCom text.
        self.by_task: dict[str, dict[int, dict[str, str]]] = {}
        #: task instances whose stored rows must be deleted at the next flush.
        self.to_delete: set[TaskSlot] = set()
        #: task instances whose values the next flush inserts.
        self.to_insert: dict[TaskSlot, dict[str, str]] = {}

    def load(self, rows: Iterable[Any]) -> None:
        for row in rows:
            self.by_task.setdefault(row.task_id, {}).setdefault(row.map_index, {})[row.key] = row.value

    def clear(self, slot: TaskSlot) -> None:
        """A new try starts: its task instance's earlier values go (Airflow clears them too)."""
        task_id, map_index = slot
        instances = self.by_task.get(task_id)
        if instances is not None and instances.pop(map_index, None) is not None:
            self.to_delete.add(slot)
            if not instances:
                del self.by_task[task_id]
        self.to_insert.pop(slot, None)

    def store(self, slot: TaskSlot, values: Mapping[str, str]) -> None:
        """A try succeeded and reported ``values``."""
        if not values:
            return
        self.clear(slot)
        self.by_task.setdefault(slot[0], {})[slot[1]] = dict(values)
        self.to_insert[slot] = dict(values)

    @property
    def has_changes(self) -> bool:
        return bool(self.to_delete or self.to_insert)

    def written(self) -> None:
        self.to_delete.clear()
        self.to_insert.clear()


def load_run_values(session, dag_id: str, run_id: str) -> RunValues:
    values = RunValues()
    values.load(session.execute(select(XCom.task_id, XCom.map_index, XCom.key, XCom.value).where(
        XCom.dag_id == dag_id, XCom.run_id == run_id)))
    return values


def write_changes(session, dag_id: str, run_id: str, values: RunValues) -> None:
    """Apply one run's pending value changes in ``session`` (the flush's transaction)."""
    for task_id, map_index in values.to_delete:
        session.execute(delete(XCom).where(and_(XCom.dag_id == dag_id, XCom.run_id == run_id,
                                                XCom.task_id == task_id, XCom.map_index == map_index)))
    now = utcnow()
    rows = [{"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index, "key": key,
             "value": text, "timestamp": now}
            for (task_id, map_index), by_key in values.to_insert.items() for key, text in by_key.items()]
    if rows:
        session.execute(insert(XCom), rows)


# -- handing over ------------------------------------------------------------------------
def upstream_order(dag: Any, task_id: str) -> list[str]:
    """The task's upstream tasks, nearest first (breadth-first), cached on the parsed DAG."""
    cache = dag.__dict__.setdefault("_upstream_order", {})
    order = cache.get(task_id)
    if order is None:
        order, seen, frontier = [], {task_id}, [task_id]
        while frontier:
            following = []
            for current in frontier:
                task = dag.tasks.get(current)
                for parent in sorted(task.upstream_task_ids) if task is not None else ():
                    if parent not in seen:
                        seen.add(parent)
                        order.append(parent)
                        following.append(parent)
            frontier = following
        cache[task_id] = order
    return order


def handover_for(dag: Any, task_id: str, values: RunValues, *, conf: Mapping[str, Any] | None,
                 run_type: str | None, run_id: str = "", run: Mapping[str, str] | None = None) -> str | None:
    """The ``--inputs`` word for a try of ``task_id``, or None when it has nothing to be handed
    (no values, no conf, and a run id that names its run type, as crossdock's do)."""
    upstream = upstream_order(dag, task_id)
    chosen = [(parent, map_index, key, text) for parent in upstream
              for map_index, by_key in sorted(values.by_task.get(parent, {}).items())
              for key, text in by_key.items()]
    if not chosen and not conf and not run and (not run_type or run_id.startswith(f"{run_type}__")):
        return None
    word = encode_inputs(conf=conf, run_type=run_type, values=chosen, upstream=upstream, run=run)
    if len(word) <= MAX_INPUTS_CHARS:
        return word
    direct = set(dag.tasks[task_id].upstream_task_ids)
    kept = [item for item in chosen if item[0] in direct]
    withheld = {item[0] for item in chosen} - direct
    word = encode_inputs(conf=conf, run_type=run_type, values=kept, upstream=upstream, withheld=withheld,
                         run=run)
    if len(word) > MAX_INPUTS_CHARS:
        raise ValueHandoverError(
            f"the values of the direct upstream tasks of {task_id!r} and the run's conf are {len(word):,} "
            f"characters encoded, over the {MAX_INPUTS_CHARS:,} a task command can carry; push smaller "
            f"values (a path or URI to the data)")
    return word



# -- what a try cannot look up about its run ------------------------------------------------
def run_facts(session, dag_run: Any) -> dict[str, str]:
    """The run's data interval (when it is not just the logical date) and the dates of the
    DAG's last successful run before it: one query when the run becomes active."""
    from crossdock.models import DagRun

    facts: dict[str, str] = {}
    if dag_run.data_interval_start is not None and (
            dag_run.data_interval_start != dag_run.logical_date or dag_run.data_interval_end != dag_run.logical_date):
        facts["data_interval_start"] = dag_run.data_interval_start.isoformat()
        facts["data_interval_end"] = dag_run.data_interval_end.isoformat()
    previous = session.execute(
        select(DagRun.data_interval_start, DagRun.data_interval_end, DagRun.start_date, DagRun.end_date)
        .where(DagRun.dag_id == dag_run.dag_id, DagRun.state == "success",
               DagRun.logical_date < dag_run.logical_date)
        .order_by(DagRun.logical_date.desc()).limit(1)).first()
    if previous is not None:
        for name, value in zip(PREVIOUS_SUCCESS_KEYS, previous):
            if value is not None:
                facts[name] = value.isoformat()
    return facts

