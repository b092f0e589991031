"""DAG runs into the scheduler: scheduled intervals created, triggered runs started, runs loaded.

A run enters the task table in one step that creates its missing task instances with a
single bulk ``INSERT … RETURNING``, so a wide DAG costs one statement, not one a task.
Every transaction here that writes renews the lease first (``lease.fence``): a paused
scheduler that wakes up after another took over writes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import and_, insert, or_, select

from crossdock.database import create_session
from crossdock.models import DagModel, DagRun, SerializedDagModel, TaskInstance
from crossdock.models.base import utcnow
from crossdock.models.taskinstance import NEW_TI_COLUMNS
from crossdock.scheduler.active_run import ActiveRun
from crossdock.scheduler.value_handover import load_run_values, run_facts
from crossdock.scheduler.dag_runs import BACKFILL, SCHEDULED, run_id_for
from crossdock.scheduler.leadership import SchedulerLease
from crossdock.scheduler.task_table import TaskTable
from crossdock.scheduler.timetable import ONCE, next_data_interval
from crossdock.state import DagRunState, FINISHED_STATES

log = logging.getLogger("crossdock.scheduler")


class RunLoader:
    """Creates due scheduled runs and moves queued runs into the task table."""

    def __init__(self, table: TaskTable, lease: SchedulerLease):
        self.table = table
        self.lease = lease
        self.scheduled_dags: list[DagModel] = []
        self._last_scheduled_end: dict[str, datetime | None] = {}
        self._once_done: set[str] = set()
        self._new_tis: list[tuple[ActiveRun, TaskInstance]] = []

    def load_scheduled_dags(self) -> None:
        """Re-read which DAGs have a schedule (after a parse), and where each left off."""
        with create_session() as session:
            self.scheduled_dags = list(session.scalars(select(DagModel).where(
                DagModel.schedule.is_not(None), DagModel.is_active.is_(True))))
            for dag in self.scheduled_dags:
                if dag.dag_id not in self._last_scheduled_end:
                    last = session.scalars(
                        select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_type == SCHEDULED)
                        .order_by(DagRun.data_interval_end.desc()).limit(1)).first()
                    self._last_scheduled_end[dag.dag_id] = last.data_interval_end if last else None
                    if last is not None:
                        self._once_done.add(dag.dag_id)

    def create_scheduled_runs(self, now: datetime) -> int:
        """A queued run for each unpaused DAG whose next interval is due, within max_active_runs."""
        created = 0
        if not self.scheduled_dags:
            return 0
        with create_session() as session:
            # Pausing takes effect at once: the flag is read here, not kept from the last parse.
            unpaused = set(session.scalars(select(DagModel.dag_id).where(
                DagModel.is_paused.is_(False), DagModel.is_active.is_(True))))
            for dag in self.scheduled_dags:
                if dag.dag_id not in unpaused or self.table.active_count(dag.dag_id) >= dag.max_active_runs:
                    continue
                interval = next_data_interval(
                    schedule=dag.schedule, start_date=dag.start_date,
                    last_interval_end=self._last_scheduled_end.get(dag.dag_id), catchup=dag.catchup,
                    now=now, had_once_run=dag.dag_id in self._once_done)
                if interval is None:
                    continue
                run_id = run_id_for(SCHEDULED, interval.start)
                # A backfill may have run this interval already: one run per interval.
                exists = session.scalar(select(DagRun.id).where(DagRun.dag_id == dag.dag_id, or_(
                    DagRun.run_id == run_id, and_(DagRun.run_type == BACKFILL,
                                                  DagRun.logical_date == interval.start))).limit(1))
                if exists is None:
                    if not created:
                        self.lease.fence(session)
                    session.add(DagRun(dag_id=dag.dag_id, run_id=run_id, run_type=SCHEDULED,
                                       logical_date=interval.start, data_interval_start=interval.start,
                                       data_interval_end=interval.end, state=DagRunState.QUEUED.value,
                                       queued_at=now, conf={}))
                    created += 1
                self._last_scheduled_end[dag.dag_id] = interval.end
                if dag.schedule == ONCE:
                    self._once_done.add(dag.dag_id)
        return created

    def load_active_runs(self) -> None:
        """At start: every running run and its task instances, then the queued runs."""
        with create_session() as session:
            self.lease.fence(session)
            runs = list(session.scalars(select(DagRun).where(DagRun.state == DagRunState.RUNNING.value)))
            for dag_run in runs:
                tis = session.scalars(select(TaskInstance).where(
                    TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)).all()
                self._activate(dag_run, session, existing=list(tis))
        self.load_new_runs()

    def load_new_runs(self) -> int:
        """Queued runs → running, within each DAG's max_active_runs (one query when there are none).

        A paused DAG's runs wait in queued until it is unpaused, as in Airflow; backfill
        runs are the exception (a backfill is asked for explicitly, and Airflow's runs
        whatever the pause says). A run queued again by a clear keeps its task instances:
        they are read with one query for every queued run that has any.
        """
        with create_session() as session:
            if session.scalar(select(DagRun.id).where(DagRun.state == DagRunState.QUEUED.value).limit(1)) is None:
                return 0
        with create_session() as session:
            self.lease.fence(session)
            queued = list(session.scalars(select(DagRun).where(DagRun.state == DagRunState.QUEUED.value)
                                          .order_by(DagRun.queued_at, DagRun.id)))
            active_by_dag: dict[str, int] = {}
            for run in self.table.runs.values():
                active_by_dag[run.dag_id] = active_by_dag.get(run.dag_id, 0) + 1
            started = 0
            existing = _existing_task_instances(session)
            for dag_run in queued:
                dag = session.get(DagModel, dag_run.dag_id)
                limit = dag.max_active_runs if dag else 1
                if active_by_dag.get(dag_run.dag_id, 0) >= limit:
                    continue
                if dag is not None and dag.is_paused and dag_run.run_type != BACKFILL:
                    continue
                if self._activate(dag_run, session, existing=existing.get((dag_run.dag_id, dag_run.run_id), [])):
                    active_by_dag[dag_run.dag_id] = active_by_dag.get(dag_run.dag_id, 0) + 1
                    started += 1
            return started

    def _activate(self, dag_run: DagRun, session, *, existing: list[TaskInstance]) -> bool:
        from crossdock.dag.serialization import SerializedDAG

        row = session.get(SerializedDagModel, dag_run.dag_id)
        if row is None:
            log.error("run %s of DAG %s has no parsed DAG; marking it failed", dag_run.run_id, dag_run.dag_id)
            dag_run.state = DagRunState.FAILED.value
            dag_run.end_date = utcnow()
            return False
        dag = SerializedDAG.from_dict(row.data)
        run = ActiveRun(dag_run, dag)
        if existing:  # a run resumed after a restart: the values its finished tasks pushed
            run.values = load_run_values(session, dag_run.dag_id, dag_run.run_id)
        run.facts = run_facts(session, dag_run)
        self.table.past.register(session, run)
        if dag_run.state != DagRunState.RUNNING.value:
            dag_run.state = DagRunState.RUNNING.value
            dag_run.start_date = utcnow()
        by_task = {(ti.task_id, ti.map_index): ti for ti in existing}
        expanded = {task_id for task_id, map_index in by_task if map_index >= 0}
        for task_id, task in dag.tasks.items():
            ti = by_task.pop((task_id, -1), None)
            if ti is None and task_id in expanded:  # a mapped task expanded before a restart
                for key in sorted(key for key in by_task if key[0] == task_id):
                    run.add(by_task.pop(key))
                continue
            if ti is None:
                ti = TaskInstance(
                    dag_id=dag_run.dag_id, task_id=task_id, run_id=dag_run.run_id, map_index=-1,
                    try_number=0, max_tries=task.retries, state=None, queue=task.queue, pool=task.pool,
                    pool_slots=task.pool_slots, priority_weight=task.priority_weight,
                    executor=task.executor, executor_config=task.executor_config,
                    stuck_in_queued_count=0)
                self._new_tis.append((run, ti))
            run.add(ti)
        for ti in by_task.values():  # tasks removed from the DAG since the run began
            if ti.state not in FINISHED_STATES:
                run.add(ti)
        if self._new_tis:
            self._insert_new_tis(session)
        self.table.add_run(dag_run.id, run)
        return True

    def _insert_new_tis(self, session) -> None:
        """Write new task instances in one bulk INSERT ... RETURNING so they get ids at once."""
        pending, self._new_tis = self._new_tis, []
        rows = [{column: getattr(ti, column) for column in NEW_TI_COLUMNS} for _run, ti in pending]
        ids = session.execute(insert(TaskInstance).returning(TaskInstance.id, sort_by_parameter_order=True),
                              rows).scalars().all()
        for (_run, ti), ti_id in zip(pending, ids):
            ti.id = ti_id


def _existing_task_instances(session) -> dict[tuple[str, str], list[TaskInstance]]:
    """The task instances of queued runs that have some (runs queued again by a clear), by run."""
    rows = session.scalars(select(TaskInstance).join(DagRun, and_(
        DagRun.dag_id == TaskInstance.dag_id, DagRun.run_id == TaskInstance.run_id))
        .where(DagRun.state == DagRunState.QUEUED.value))
    by_run: dict[tuple[str, str], list[TaskInstance]] = {}
    for ti in rows:
        by_run.setdefault((ti.dag_id, ti.run_id), []).append(ti)
    return by_run
