"""``depends_on_past`` and ``wait_for_downstream``: a task instance that waits on the same
task in the DAG's previous run.

Only runs of DAGs that use them are watched. When such a run becomes active its previous
run (by logical date) is found once: while that run is active too, its task states are
read from memory as they change; once finished, from the snapshot taken then. A run with
no previous run does not wait (Airflow's first-run rule), nor does a task the previous
run did not have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from crossdock.state import TaskInstanceState as S

if TYPE_CHECKING:
    from crossdock.scheduler.active_run import ActiveRun
    from crossdock.scheduler.task_table import TaskTable

#: The previous run's states that let a depends_on_past task go on.
PAST_OK = frozenset({S.SUCCESS, S.SKIPPED})


def uses_past(dag: Any) -> bool:
    return any(task.depends_on_past for task in dag.tasks.values())


class PastDependencies:
    def __init__(self, table: "TaskTable"):
        self.table = table
        #: run id → (previous run's id, its task states when it was looked up).
        self.previous: dict[int, tuple[int, dict[str, str | None]]] = {}

    def register(self, session, run: "ActiveRun") -> None:
        """Find ``run``'s previous run, if its DAG has a depends_on_past task (one query)."""
        if not uses_past(run.dag):
            return
        from crossdock.models import DagRun, TaskInstance

        dag_run = run.dag_run
        prev_id = session.scalar(select(DagRun.id).where(
            DagRun.dag_id == dag_run.dag_id, DagRun.logical_date < dag_run.logical_date)
            .order_by(DagRun.logical_date.desc()).limit(1))
        if prev_id is None:
            return
        prev_run_id = session.scalar(select(DagRun.run_id).where(DagRun.id == prev_id))
        states = dict(session.execute(select(TaskInstance.task_id, TaskInstance.state).where(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == prev_run_id,
            TaskInstance.map_index == -1)).all())
        self.previous[dag_run.id] = (prev_id, states)

    def _state(self, run: "ActiveRun", task_id: str) -> tuple[bool, str | None]:
        """(whether the previous run has the task, its state there)."""
        prev_id, snapshot = self.previous[run.dag_run.id]
        live = self.table.runs.get(prev_id) or self.table.finished_runs.get(prev_id)
        if live is not None:
            ti = live.tis.get((task_id, -1))
            return ti is not None, ti.state if ti is not None else None
        return task_id in snapshot, snapshot.get(task_id)

    def allows(self, run: "ActiveRun", task: Any) -> bool:
        """Whether ``task`` of ``run`` may be scheduled as far as the previous run goes."""
        if not task.depends_on_past or run.dag_run.id not in self.previous:
            return True
        ids = [task.task_id, *(sorted(task.downstream_task_ids) if task.wait_for_downstream else ())]
        for task_id in ids:
            present, state = self._state(run, task_id)
            if present and state not in PAST_OK:
                return False
        return True

    def finished(self, run: "ActiveRun") -> None:
        """A task of ``run`` finished: the runs waiting on it check their past-bound tasks again."""
        for run_id, (prev_id, _) in self.previous.items():
            if prev_id == run.dag_run.id:
                waiting = self.table.runs.get(run_id)
                if waiting is not None:
                    waiting.pending_checks.update(
                        task_id for task_id, task in waiting.dag.tasks.items() if task.depends_on_past)

    def forget(self, run: "ActiveRun") -> None:
        self.previous.pop(run.dag_run.id, None)
