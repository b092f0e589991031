"""A DAG run the scheduler is working on, held in memory with its task instances.

The scheduler is the only writer of task state (design principle 1), so its memory is
the truth between flushes: dependency checks read this object, not the database, and a
finished task only re-examines its own downstream tasks. That is what keeps a loop's
cost proportional to what changed rather than to everything in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossdock.models import DagRun, TaskInstance
from crossdock.scheduler.value_handover import RunValues
from crossdock.state import FINISHED_STATES

if TYPE_CHECKING:
    from crossdock.dag.serialization import SerializedDAG


class ActiveRun:
    def __init__(self, dag_run: DagRun, dag: "SerializedDAG"):
        self.dag_run = dag_run
        self.dag = dag
        #: (task_id, map_index) → task instance
        self.tis: dict[tuple[str, int], TaskInstance] = {}
        #: task ids whose dependencies must be (re-)checked
        self.pending_checks: set[str] = set()
        self.unfinished = 0
        #: The run's XComs (see :mod:`crossdock.scheduler.value_handover`).
        self.values = RunValues()
        #: What a try cannot look up about its run (see :func:`~crossdock.scheduler.value_handover.run_facts`).
        self.facts: dict[str, str] = {}
        #: (task_id, map_index) of a sensor in reschedule mode → its first poke and poke count,
        #: handed to its next try (kept in memory only).
        self.sensors: dict[tuple[str, int], dict[str, str]] = {}
        #: The run outlived its dagrun_timeout: it fails whatever its tasks' states.
        self.timed_out = False
        #: task_id → its task instances (one, or one per map index of a mapped task).
        self.by_task: dict[str, list[TaskInstance]] = {}

    @property
    def dag_id(self) -> str:
        return self.dag_run.dag_id

    @property
    def run_id(self) -> str:
        return self.dag_run.run_id

    def add(self, ti: TaskInstance) -> None:
        self.tis[(ti.task_id, ti.map_index)] = ti
        self.by_task.setdefault(ti.task_id, []).append(ti)
        if ti.state not in FINISHED_STATES:
            self.unfinished += 1

    def instances(self, task_id: str) -> list[TaskInstance]:
        """The task's instances: one, or one per map index once a mapped task is expanded."""
        return self.by_task.get(task_id, [])

    def renumber(self, ti: TaskInstance, map_index: int) -> None:
        """A mapped task's placeholder instance becomes its instance ``map_index``."""
        del self.tis[(ti.task_id, ti.map_index)]
        ti.map_index = map_index
        self.tis[(ti.task_id, map_index)] = ti

    def upstream_states(self, task_id: str) -> list[str | None]:
        task = self.dag.tasks[task_id]
        return [ti.state for upstream in task.upstream_task_ids for ti in self.instances(upstream)]

    def downstream_ids(self, task_id: str) -> frozenset[str]:
        task = self.dag.tasks.get(task_id)
        return task.downstream_task_ids if task is not None else frozenset()

    def all_succeeded(self) -> bool:
        return all(ti.state in ("success", "skipped") for ti in self.tis.values())
