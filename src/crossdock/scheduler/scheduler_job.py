"""The scheduler loop: DAG runs in, executor work out, outcomes recorded.

One loop step:

1. pick up newly triggered runs and due scheduled intervals (one query);
2. re-check dependencies only of tasks whose upstream changed;
3. queue ready tasks by priority within parallelism, per-DAG and pool limits;
4. ``executor.heartbeat()``;
5. apply the executor's event buffer (success, failure → retry or fail, running, queued);
6. handle tasks stuck in queued, finished runs, the job heartbeat;
7. flush every change of the step in one transaction (bulk insert / bulk update).

User code never runs here: DAG files are parsed in child processes, tasks run in the
executor's workers. An exception from an executor or the database is logged and the
loop goes on; changes not yet flushed are kept and flushed on the next step.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Callable, Iterable

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from crossdock.configuration import conf
from crossdock.database import create_session, describe_db_error
from crossdock.executors.base_executor import BaseExecutor
from crossdock.executors.routing import check_rules, configured_rules, route
from crossdock.models import DagModel, DagRun, Job, Pool, SerializedDagModel, TaskInstance
from crossdock.models.base import utcnow
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import task_run_command
from crossdock.scheduler import trigger_rules
from crossdock.scheduler.active_run import ActiveRun
from crossdock.scheduler.dag_runs import SCHEDULED, run_id_for
from crossdock.scheduler.leadership import LeadershipLost, SchedulerLease
from crossdock.scheduler.limits import SlotLimits
from crossdock.scheduler.timetable import ONCE, next_data_interval
from crossdock.state import DagRunState, FINISHED_STATES
from crossdock.state import TaskInstanceState as S

log = logging.getLogger("crossdock.scheduler")

JOB_TYPE = "SchedulerJob"
#: How often (seconds) due scheduled intervals and stuck queued tasks are looked for.
HOUSEKEEPING_INTERVAL = 1.0
#: How often (seconds) pool sizes are re-read.
POOL_REFRESH_INTERVAL = 10.0
#: How often (seconds) a standby looks at the lease.
STANDBY_POLL_INTERVAL = 0.5
#: Columns of a task instance the scheduler changes and flushes.
TI_FLUSH_COLUMNS = (
    "state", "try_number", "max_tries", "executor", "external_executor_id", "queued_by_job_id",
    "hostname", "pid", "queued_dttm", "start_date", "end_date", "duration", "next_retry_at",
    "stuck_in_queued_count", "failure_reason",
)
RUN_FLUSH_COLUMNS = ("state", "start_date", "end_date")

StateListener = Callable[[TaskInstance, "str | None", str], None]


class SchedulerJob:
    """Runs the loop; ``executors[0]`` is the default, the others are chosen by a task's ``executor``.

    :param executors: started by :meth:`run`, ended when it returns.
    :param on_state_change: called as ``(ti, old_state, new_state)`` on every transition
        (the demo prints progress with it). It must be quick and must not raise.
    :param parse_dags: parse the DAG folder at start and every ``dag_dir_list_interval``.
    """

    def __init__(self, *, executors: list[BaseExecutor], on_state_change: StateListener | None = None,
                 parse_dags: bool = True, dags_folder: str | None = None):
        if not executors:
            raise ValueError("a scheduler needs at least one executor")
        self.executors = executors
        self.default_executor = executors[0]
        self._executor_names = self._index_executors(executors)
        self._routing_rules = configured_rules()
        check_rules(self._routing_rules, self._executor_names)
        self.on_state_change = on_state_change
        self.parse_dags = parse_dags
        self.dags_folder = dags_folder or conf.getstr("core", "dags_folder")
        self.job_id: int | None = None
        self.lease: SchedulerLease | None = None
        #: True once another scheduler took the lease from this one; it wrote nothing since.
        self.lost_leadership = False
        self._sends_outlive_this_process = False
        self._database_lost = False
        self.hostname = conf.getstr("core", "hostname") or socket.getfqdn()

        self.runs: dict[int, ActiveRun] = {}
        self._ti_by_primary: dict[tuple[str, str, str, int], tuple[ActiveRun, TaskInstance]] = {}
        self._ready: list[tuple[int, int, int]] = []  # (-priority, seq, ti id)
        self._ready_ids: set[int] = set()
        self._retry_heap: list[tuple[datetime, int, int]] = []  # (due, seq, ti id)
        self._ti_by_id: dict[int, tuple[ActiveRun, TaskInstance]] = {}
        self._queued_ids: set[int] = set()
        self._seq = itertools.count()
        self._dirty_tis: set[int] = set()
        self._dirty_runs: set[int] = set()
        self._new_tis: list[tuple[ActiveRun, TaskInstance]] = []
        self._finished_runs: dict[int, ActiveRun] = {}
        self._finished_tis: dict[int, tuple[ActiveRun, TaskInstance]] = {}

        self.limits = SlotLimits(parallelism=conf.getint("core", "parallelism"), pool_slots={})
        self._default_max_active_tasks = conf.getint("core", "max_active_tasks_per_dag")
        self._task_queued_timeout = conf.getfloat("scheduler", "task_queued_timeout")
        self._stuck_retries = conf.getint("scheduler", "num_stuck_in_queued_retries")
        self._heartbeat_every = conf.getfloat("scheduler", "scheduler_heartbeat_sec")
        self._poll_every = conf.getfloat("scheduler", "new_runs_poll_interval")
        self._parse_every = conf.getfloat("scheduler", "dag_dir_list_interval")
        self._orphan_every = conf.getfloat("scheduler", "orphaned_tasks_check_interval")
        self._takeover_seconds = conf.getfloat("scheduler", "standby_takeover_seconds")
        self._min_sleep = conf.getfloat("scheduler", "min_loop_sleep")
        self._max_sleep = conf.getfloat("scheduler", "max_loop_sleep")

        self._last_poll = self._last_heartbeat = self._last_housekeeping = 0.0
        self._last_pool_refresh = self._next_orphan_check = 0.0
        self._last_scheduled_end: dict[str, datetime | None] = {}
        self._once_done: set[str] = set()
        self._scheduled_dags: list[DagModel] = []
        self._dags_changed = threading.Event()
        self._parser: threading.Thread | None = None
        self._stop = threading.Event()
        self.loop_count = 0
        self.last_loop_seconds = 0.0

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _index_executors(executors: list[BaseExecutor]) -> dict[str, BaseExecutor]:
        """Every name a task may use for an executor; a hybrid's children map to the hybrid."""
        names: dict[str, BaseExecutor] = {}
        for executor in executors:
            aliases = {getattr(executor, "name", None), type(executor).__name__,
                       f"{type(executor).__module__}.{type(executor).__name__}"}
            aliases.update(getattr(executor, "child_executors", {}))
            for alias in aliases:
                if alias and alias not in names:
                    names[alias] = executor
        return names

    def executor_for(self, ti: TaskInstance) -> BaseExecutor | None:
        """The task's own ``executor``, else the first ``[executor_routing]`` rule its queue matches."""
        name = ti.executor or route(ti.queue, self._routing_rules)
        if name:
            return self._executor_names.get(name)
        return self.default_executor

    def stop(self) -> None:
        """Ask the loop to finish its step and shut down (safe from a signal handler)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def start(self) -> bool:
        """Register the job, wait as a standby for the lease, then start executors, parse DAGs,
        load active runs and adopt the tries of the schedulers before this one.

        Returns False when :meth:`stop` was called while still a standby.
        """
        with create_session() as session:
            now = utcnow()
            job = Job(job_type=JOB_TYPE, state="running", hostname=self.hostname, pid=os.getpid(),
                      executor_class=",".join(type(e).__name__ for e in self.executors),
                      start_date=now, latest_heartbeat=now)
            session.add(job)
            session.flush()
            self.job_id = job.id
        self.lease = SchedulerLease(job_id=self.job_id, takeover_seconds=self._takeover_seconds)
        if not self._wait_for_lease():
            return False
        for executor in self.executors:
            executor.job_id = self.job_id
            executor.start()
        if self.parse_dags:
            self._parse_dag_folder()
        self._refresh_pools()
        self._load_scheduled_dags()
        self._load_active_runs()
        self._adopt_or_reset_orphans()
        self._flush()
        if self.parse_dags and self._parse_every > 0:
            self._parser = threading.Thread(target=self._parse_forever, name="dag-parser", daemon=True)
            self._parser.start()
        log.info("scheduler job %s active with %s", self.job_id,
                 ", ".join(type(e).__name__ for e in self.executors))
        return True

    # ------------------------------------------------------------------ leadership
    def _wait_for_lease(self) -> bool:
        """Be a hot standby until the lease is this job's; False if stopped first."""
        announced = False
        last_heartbeat = time.monotonic()
        while not self._stop.is_set():
            try:
                with create_session() as session:
                    if self.lease.try_acquire(session):
                        return True
            except SQLAlchemyError as exc:
                log.error("standby could not read the scheduler lease: %s", describe_db_error(exc))
            if not announced:
                announced = True
                log.info("scheduler job %s is a standby: another scheduler holds the lease", self.job_id)
            if time.monotonic() - last_heartbeat >= self._heartbeat_every:
                last_heartbeat = time.monotonic()
                self._heartbeat_job()
            self._stop.wait(min(STANDBY_POLL_INTERVAL, self.lease.timeout / 4))
        return False

    def _ensure_leader(self) -> None:
        """Renew the lease when due, so nothing is sent or written on an expired one."""
        if self.lease.held and not self.lease.renewal_due:
            return
        with create_session() as session:
            self.lease.fence(session)

    @contextmanager
    def _fenced_session(self):
        """A transaction that writes only while this job holds the lease (checked inside it)."""
        with create_session() as session:
            self.lease.fence(session)
            yield session

    # ------------------------------------------------------------------ the loop
    def run(self, *, stop_when: Callable[["SchedulerJob"], bool] | None = None,
            max_loops: int | None = None, handle_signals: bool = False) -> None:
        """Run until :meth:`stop`, ``stop_when(self)`` is true, or ``max_loops`` steps."""
        if handle_signals:
            self._install_signal_handlers()
        if not self.start():
            self._close_job("success")
            return
        clean = False
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                changed = self.loop_once()
                self.last_loop_seconds = time.perf_counter() - started
                if stop_when is not None and stop_when(self):
                    break
                if max_loops is not None and self.loop_count >= max_loops:
                    break
                if not changed:
                    self._idle_wait()
            clean = True
        except LeadershipLost as exc:
            self.lost_leadership = True
            log.error("%s; stepping down without writing", exc)
        finally:
            self.shutdown(clean=clean)

    def loop_once(self) -> int:
        """One step of the loop; returns how many things changed."""
        self.loop_count += 1
        if not self._db_reachable_for(self._ensure_leader):
            return 0
        now = utcnow()
        mono = time.monotonic()
        changed = 0
        if mono - self._last_poll >= self._poll_every:
            self._last_poll = mono
            changed += self._guard(self._load_new_runs)
        if mono - self._last_housekeeping >= HOUSEKEEPING_INTERVAL:
            self._last_housekeeping = mono
            if self._dags_changed.is_set():
                self._dags_changed.clear()
                self._guard(self._load_scheduled_dags)
            changed += self._guard(lambda: self._create_scheduled_runs(now))
            changed += self._guard(lambda: self._fail_stuck_queued(now))
        if mono - self._last_pool_refresh >= POOL_REFRESH_INTERVAL:
            self._guard(self._refresh_pools)
        if mono >= self._next_orphan_check:
            changed += self._guard(self._adopt_or_reset_orphans)
        changed += self._release_due_retries(now)
        changed += self._check_dependencies()
        changed += self._queue_ready_tasks(now)
        if self._sends_outlive_this_process:
            # Tries bound for workers or pods are in the database before any is sent, so
            # the scheduler that takes over after a crash knows every try that may be out.
            # (A local executor's tries end with this process: nothing to adopt.)
            if not self._db_reachable_for(self._flush):
                return changed
            self._sends_outlive_this_process = False
        if not self._db_reachable_for(self._ensure_leader):
            return changed
        for executor in self.executors:
            self._guard(executor.heartbeat)
        changed += self._process_events()
        changed += self._finish_runs()
        if mono - self._last_heartbeat >= self._heartbeat_every:
            self._last_heartbeat = mono
            self._heartbeat_job()
        self._guard(self._flush)
        return changed

    def _db_reachable_for(self, step: Callable[[], object]) -> bool:
        """Run a step the rest of the loop step depends on; on a database error, skip the rest.

        Nothing is sent to an executor while the lease cannot be renewed or the tries to
        send cannot be recorded; executors keep their events until the next step reads
        them. One line when the database goes away, one when it is back.
        """
        try:
            step()
        except SQLAlchemyError as exc:
            if not self._database_lost:
                self._database_lost = True
                log.error("the metadata database cannot be reached (%s); sending and recording nothing "
                          "until it can", describe_db_error(exc))
            return False
        if self._database_lost:
            self._database_lost = False
            log.warning("the metadata database can be reached again")
        return True

    def _guard(self, step: Callable[[], int | None]) -> int:
        """Run one step; an error is logged and the loop goes on."""
        try:
            return step() or 0
        except LeadershipLost:
            raise
        except SQLAlchemyError as exc:
            log.error("database error in scheduler step %s: %s", getattr(step, "__name__", step),
                      describe_db_error(exc))
        except Exception:  # noqa: BLE001 - the scheduler must survive any one step failing
            log.exception("error in scheduler step %s", getattr(step, "__name__", step))
        return 0

    def _idle_wait(self) -> None:
        timeout = self._max_sleep
        if self._retry_heap:
            due = (self._retry_heap[0][0] - utcnow()).total_seconds()
            timeout = min(timeout, max(self._min_sleep, due))
        timeout = min(timeout, max(self._min_sleep, self._poll_every - (time.monotonic() - self._last_poll)))
        if len(self.executors) == 1:
            self.default_executor.wait_for_events(timeout)
        else:
            time.sleep(min(timeout, self._min_sleep * 5))

    def _install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            log.info("received %s, shutting down", signal.Signals(signum).name)
            if self._stop.is_set():
                log.warning("second signal: terminating tasks in flight")
                for executor in self.executors:
                    self._guard(executor.terminate)
                os._exit(1)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def shutdown(self, *, clean: bool = True) -> None:
        """End the executors, record outcomes, give up the lease, close the job.

        A scheduler that lost the lease records nothing: its tries belong to the new
        active scheduler, which adopts them and records their outcomes.
        """
        for executor in self.executors:
            self._guard_shutdown(executor.end)
            if not self.lost_leadership:
                self._guard_shutdown(self._process_events)
        if not self.lost_leadership:
            self._finish_runs()
            self._guard_shutdown(self._flush)
            self._guard_shutdown(self._release_lease)
        self._close_job("success" if clean and not self.lost_leadership else "failed")

    def _guard_shutdown(self, step: Callable[[], object]) -> None:
        try:
            self._guard(step)
        except LeadershipLost as exc:
            self.lost_leadership = True
            log.error("%s while shutting down; the active scheduler records what is left", exc)

    def _release_lease(self) -> None:
        with create_session() as session:
            self.lease.release(session)

    def _close_job(self, state: str) -> None:
        try:
            with create_session() as session:
                session.execute(update(Job).where(Job.id == self.job_id).values(state=state, end_date=utcnow()))
        except SQLAlchemyError as exc:
            log.error("could not close job %s: %s", self.job_id, describe_db_error(exc))

    # ------------------------------------------------------------------ DAG files
    def _parse_dag_folder(self) -> None:
        from crossdock.dag.dag_store import store_parse_result
        from crossdock.dag.processor import parse_dag_folder

        result = parse_dag_folder(self.dags_folder)
        store_parse_result(result)
        for path, error in result.import_errors.items():
            log.warning("DAG file %s failed to import: %s", path, error.strip().splitlines()[-1] if error.strip() else error)
        self._dags_changed.set()

    def _parse_forever(self) -> None:
        while not self._stop.wait(self._parse_every):
            try:
                self._parse_dag_folder()
            except Exception:  # noqa: BLE001 - parsing trouble must not stop the scheduler
                log.exception("parsing the DAG folder failed")

    def _load_scheduled_dags(self) -> None:
        with create_session() as session:
            self._scheduled_dags = list(session.scalars(select(DagModel).where(
                DagModel.schedule.is_not(None), DagModel.is_active.is_(True))))
            for dag in self._scheduled_dags:
                if dag.dag_id not in self._last_scheduled_end:
                    last = session.scalars(
                        select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_type == SCHEDULED)
                        .order_by(DagRun.data_interval_end.desc()).limit(1)).first()
                    self._last_scheduled_end[dag.dag_id] = last.data_interval_end if last else None
                    if last is not None:
                        self._once_done.add(dag.dag_id)

    def _refresh_pools(self) -> None:
        self._last_pool_refresh = time.monotonic()
        with create_session() as session:
            self.limits.pool_slots = {pool.pool: pool.slots for pool in session.scalars(select(Pool))}

    # ------------------------------------------------------------------ runs
    def _create_scheduled_runs(self, now: datetime) -> int:
        created = 0
        with create_session() as session:
            for dag in self._scheduled_dags:
                if dag.is_paused:
                    continue
                active = sum(1 for run in self.runs.values() if run.dag_id == dag.dag_id)
                if active >= dag.max_active_runs:
                    continue
                interval = next_data_interval(
                    schedule=dag.schedule, start_date=dag.start_date,
                    last_interval_end=self._last_scheduled_end.get(dag.dag_id), catchup=dag.catchup,
                    now=now, had_once_run=dag.dag_id in self._once_done)
                if interval is None:
                    continue
                run_id = run_id_for(SCHEDULED, interval.start)
                exists = session.scalar(select(DagRun.id).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
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
        if created:
            self._last_poll = 0.0
        return created

    def _load_active_runs(self) -> None:
        """At start: every queued/running run and its task instances, into memory."""
        with self._fenced_session() as session:
            runs = list(session.scalars(select(DagRun).where(DagRun.state == DagRunState.RUNNING.value)))
            for dag_run in runs:
                tis = session.scalars(select(TaskInstance).where(
                    TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)).all()
                self._activate(dag_run, session, existing=list(tis))
        self._load_new_runs()

    def _load_new_runs(self) -> int:
        """Queued runs → running, within each DAG's max_active_runs (one query when there are none)."""
        with create_session() as session:
            if session.scalar(select(DagRun.id).where(DagRun.state == DagRunState.QUEUED.value).limit(1)) is None:
                return 0
        with self._fenced_session() as session:
            queued = list(session.scalars(select(DagRun).where(DagRun.state == DagRunState.QUEUED.value)
                                          .order_by(DagRun.queued_at, DagRun.id)))
            active_by_dag: dict[str, int] = {}
            for run in self.runs.values():
                active_by_dag[run.dag_id] = active_by_dag.get(run.dag_id, 0) + 1
            started = 0
            for dag_run in queued:
                dag = session.get(DagModel, dag_run.dag_id)
                limit = dag.max_active_runs if dag else 1
                if active_by_dag.get(dag_run.dag_id, 0) >= limit:
                    continue
                if self._activate(dag_run, session, existing=[]):
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
        if dag_run.state != DagRunState.RUNNING.value:
            dag_run.state = DagRunState.RUNNING.value
            dag_run.start_date = utcnow()
        by_task = {(ti.task_id, ti.map_index): ti for ti in existing}
        for task_id, task in dag.tasks.items():
            ti = by_task.pop((task_id, -1), None)
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
        self.runs[dag_run.id] = run
        for ti in run.tis.values():
            self._index(run, ti)
        return True

    def _insert_new_tis(self, session) -> None:
        """Write new task instances in one bulk INSERT ... RETURNING so they get ids at once."""
        pending, self._new_tis = self._new_tis, []
        columns = ("dag_id", "task_id", "run_id", "map_index", "try_number", "max_tries", "state",
                   "queue", "pool", "pool_slots", "priority_weight", "executor", "executor_config",
                   "stuck_in_queued_count")
        rows = [{column: getattr(ti, column) for column in columns} for _run, ti in pending]
        ids = session.execute(insert(TaskInstance).returning(TaskInstance.id, sort_by_parameter_order=True),
                              rows).scalars().all()
        for (_run, ti), ti_id in zip(pending, ids):
            ti.id = ti_id

    def _index(self, run: ActiveRun, ti: TaskInstance) -> None:
        self._ti_by_primary[(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)] = (run, ti)
        self._ti_by_id[ti.id] = (run, ti)
        state = ti.state
        if state in (S.QUEUED, S.RUNNING):
            self.limits.occupy(ti.dag_id, ti.pool, ti.pool_slots)
            if state == S.QUEUED:
                self._queued_ids.add(ti.id)
        elif state == S.SCHEDULED:
            self._push_ready(ti)
        elif state == S.UP_FOR_RETRY:
            heapq.heappush(self._retry_heap, (ti.next_retry_at or utcnow(), next(self._seq), ti.id))
        elif state is None:
            run.pending_checks.add(ti.task_id)

    def _finish_runs(self) -> int:
        finished = 0
        for run_key, run in list(self.runs.items()):
            if run.unfinished > 0:
                continue
            dag_run = run.dag_run
            dag_run.state = (DagRunState.SUCCESS if run.all_succeeded() else DagRunState.FAILED).value
            dag_run.end_date = utcnow()
            self._dirty_runs.add(run_key)
            self._finished_runs[run_key] = run
            del self.runs[run_key]
            for ti in run.tis.values():
                self._ti_by_primary.pop((ti.dag_id, ti.task_id, ti.run_id, ti.map_index), None)
                self._ti_by_id.pop(ti.id, None)
                if ti.id in self._dirty_tis:
                    self._finished_tis[ti.id] = (run, ti)
            finished += 1
            log.info("DAG run %s of %s finished: %s", dag_run.run_id, dag_run.dag_id, dag_run.state)
        return finished

    # ------------------------------------------------------------------ transitions
    def _set_state(self, run: ActiveRun, ti: TaskInstance, new_state: str | None, **fields) -> None:
        old = ti.state
        was_busy = old in (S.QUEUED, S.RUNNING)
        is_busy = new_state in (S.QUEUED, S.RUNNING)
        if was_busy and not is_busy:
            self.limits.release(ti.dag_id, ti.pool, ti.pool_slots)
        elif is_busy and not was_busy:
            self.limits.occupy(ti.dag_id, ti.pool, ti.pool_slots)
        if new_state == S.QUEUED:
            self._queued_ids.add(ti.id)
        else:
            self._queued_ids.discard(ti.id)
        if (old in FINISHED_STATES) != (new_state in FINISHED_STATES):
            run.unfinished += -1 if new_state in FINISHED_STATES else 1
        ti.state = new_state
        for name, value in fields.items():
            setattr(ti, name, value)
        self._dirty_tis.add(ti.id)
        if new_state in FINISHED_STATES:
            run.pending_checks.update(run.downstream_ids(ti.task_id))
        if self.on_state_change is not None and old != new_state:
            try:
                self.on_state_change(ti, old, new_state)
            except Exception:  # noqa: BLE001 - a listener must not break scheduling
                log.exception("state listener failed")

    def _push_ready(self, ti: TaskInstance) -> None:
        if ti.id not in self._ready_ids:
            self._ready_ids.add(ti.id)
            heapq.heappush(self._ready, (-(ti.priority_weight or 1), next(self._seq), ti.id))

    # ------------------------------------------------------------------ dependencies
    def _check_dependencies(self) -> int:
        changed = 0
        for run in list(self.runs.values()):
            while run.pending_checks:
                task_id = run.pending_checks.pop()
                ti = run.tis.get((task_id, -1))
                if ti is None or ti.state is not None:
                    continue
                task = run.dag.tasks.get(task_id)
                if task is None:
                    self._set_state(run, ti, S.REMOVED)
                    changed += 1
                    continue
                verdict = trigger_rules.evaluate(task.trigger_rule, run.upstream_states(task_id))
                if verdict == trigger_rules.WAIT:
                    continue
                now = utcnow()
                if verdict == trigger_rules.RUN:
                    self._set_state(run, ti, S.SCHEDULED)
                    self._push_ready(ti)
                else:
                    self._set_state(run, ti, verdict, start_date=now, end_date=now, duration=0.0)
                changed += 1
        return changed

    def _release_due_retries(self, now: datetime) -> int:
        released = 0
        while self._retry_heap and self._retry_heap[0][0] <= now:
            _due, _seq, ti_id = heapq.heappop(self._retry_heap)
            entry = self._ti_by_id.get(ti_id)
            if entry is None or entry[1].state != S.UP_FOR_RETRY:
                continue
            run, ti = entry
            self._set_state(run, ti, S.SCHEDULED, next_retry_at=None)
            self._push_ready(ti)
            released += 1
        return released

    # ------------------------------------------------------------------ queueing
    def _queue_ready_tasks(self, now: datetime) -> int:
        queued = 0
        held_back: list[tuple[int, int, int]] = []
        # Once every executor is full nothing more can go out this step: stop there rather
        # than pop (and push back) every waiting task, which made a loop with thousands
        # of ready tasks cost as much as queueing them.
        full: set[int] = set()
        executor_count = len(self.executors) or 1
        while self._ready and self.limits.total < self.limits.parallelism and len(full) < executor_count:
            item = heapq.heappop(self._ready)
            ti_id = item[2]
            self._ready_ids.discard(ti_id)
            entry = self._ti_by_id.get(ti_id)
            if entry is None or entry[1].state != S.SCHEDULED:
                continue
            run, ti = entry
            executor = self.executor_for(ti)
            if executor is None:
                self._set_state(run, ti, S.FAILED, end_date=now, start_date=now, duration=0.0,
                                failure_reason=f"executor {ti.executor!r} is not configured in [core] executor")
                queued += 1
                continue
            if id(executor) in full or executor.slots_available <= 0:
                full.add(id(executor))
                held_back.append(item)
                continue
            reason = self.limits.refuse_reason(
                dag_id=ti.dag_id, max_active_tasks=run.dag.max_active_tasks or self._default_max_active_tasks,
                pool=ti.pool, slots=ti.pool_slots)
            if reason == "unknown_pool":
                self._set_state(run, ti, S.FAILED, end_date=now, start_date=now, duration=0.0,
                                failure_reason=f"pool {ti.pool!r} does not exist")
                queued += 1
                continue
            if reason is not None:
                held_back.append(item)
                continue
            self._send_to_executor(run, ti, executor, now)
            queued += 1
        for item in held_back:
            self._ready_ids.add(item[2])
            heapq.heappush(self._ready, item)
        return queued

    def _send_to_executor(self, run: ActiveRun, ti: TaskInstance, executor: BaseExecutor, now: datetime) -> None:
        self._set_state(run, ti, S.QUEUED, try_number=ti.try_number + 1, queued_dttm=now,
                        queued_by_job_id=self.job_id, external_executor_id=executor.new_external_id(ti),
                        hostname=None, pid=None,
                        start_date=None, end_date=None, duration=None, failure_reason=None,
                        executor=ti.executor or executor.executor_name_for(ti))
        if not executor.is_local:
            self._sends_outlive_this_process = True
        command = task_run_command(ti.key, subdir=run.dag.subdir)
        executor.queue_command(ti, command, priority=ti.priority_weight or 1, queue=ti.queue)

    # ------------------------------------------------------------------ executor events
    def _process_events(self) -> int:
        changed = 0
        for executor in self.executors:
            try:
                events = executor.get_event_buffer()
            except Exception:  # noqa: BLE001
                log.exception("could not read the event buffer of %s", executor)
                continue
            for key, (state, info) in events.items():
                changed += self._apply_event(key, state, info)
        return changed

    def _apply_event(self, key: TaskInstanceKey, state: str | None, info) -> int:
        entry = self._ti_by_primary.get(key.primary)
        if entry is None:
            log.debug("event %s for %s which is not in an active run; ignored", state, key)
            return 0
        run, ti = entry
        if key.try_number != ti.try_number:
            log.info("ignoring %s for try %s of %s: the current try is %s", state, key.try_number,
                     key.primary, ti.try_number)
            return 0
        now = utcnow()
        if state == S.QUEUED:
            if info and ti.external_executor_id != str(info):
                ti.external_executor_id = str(info)
                self._dirty_tis.add(ti.id)
            return 0
        if state == S.RUNNING:
            if ti.state != S.QUEUED:
                return 0
            hostname, pid = _host_and_pid(info)
            self._set_state(run, ti, S.RUNNING, start_date=now, hostname=hostname or ti.hostname, pid=pid)
            return 1
        if ti.state not in (S.QUEUED, S.RUNNING):
            log.warning("ignoring %s for %s in state %s", state, key, ti.state)
            return 0
        start = ti.start_date or ti.queued_dttm or now
        duration = max(0.0, (now - start).total_seconds())
        if state == S.SUCCESS:
            hostname, pid = _host_and_pid(info) if isinstance(info, dict) else (None, None)
            self._set_state(run, ti, S.SUCCESS, start_date=start, end_date=now, duration=duration,
                            hostname=ti.hostname or hostname, pid=ti.pid or pid)
            return 1
        reason = _reason_text(info) or f"task failed ({state})"
        from crossdock.executors.infrastructure_loss import is_infrastructure_loss

        # A try lost with its worker or node is run again without spending a retry, as a
        # try stuck in queued is; a task that keeps killing its workers is charged after
        # num_stuck_in_queued_retries such losses (counted while this scheduler runs).
        losses = getattr(ti, "_uncharged_losses", 0)
        if is_infrastructure_loss(info) and losses < self._stuck_retries:
            ti._uncharged_losses = losses + 1
            log.warning("try %s of %s was lost with its worker (%s); running it again, not charged to "
                        "its retries", ti.try_number, key.primary, reason)
            self._set_state(run, ti, S.SCHEDULED, start_date=start, end_date=now, duration=duration,
                            failure_reason=reason, max_tries=ti.max_tries + 1)
            self._push_ready(ti)
            return 1
        if ti.try_number <= ti.max_tries:
            task = run.dag.tasks.get(ti.task_id)
            delay = task.retry_delay_for(ti.try_number) if task else 0.0
            due = now + timedelta(seconds=delay)
            self._set_state(run, ti, S.UP_FOR_RETRY, start_date=start, end_date=now, duration=duration,
                            failure_reason=reason, next_retry_at=due)
            heapq.heappush(self._retry_heap, (due, next(self._seq), ti.id))
        else:
            self._set_state(run, ti, S.FAILED, start_date=start, end_date=now, duration=duration,
                            failure_reason=reason)
        return 1

    # ------------------------------------------------------------------ stuck and orphaned
    def _fail_stuck_queued(self, now: datetime) -> int:
        if self._task_queued_timeout <= 0 or not self._queued_ids:
            return 0
        limit = now - timedelta(seconds=self._task_queued_timeout)
        changed = 0
        for ti_id in list(self._queued_ids):
            run, ti = self._ti_by_id[ti_id]
            if ti.state != S.QUEUED or ti.queued_dttm is None or ti.queued_dttm > limit:
                continue
            executor = self.executor_for(ti) or self.default_executor
            self._revoke(executor, ti)
            waited = self._task_queued_timeout
            if ti.stuck_in_queued_count < self._stuck_retries:
                log.warning("task %s stuck in queued for %.0f s; requeueing it", ti.key, waited)
                # The lost try does not count against the task's own retries.
                self._set_state(run, ti, S.SCHEDULED, stuck_in_queued_count=ti.stuck_in_queued_count + 1,
                                max_tries=ti.max_tries + 1)
                self._push_ready(ti)
            else:
                self._set_state(run, ti, S.FAILED, end_date=now, start_date=ti.queued_dttm,
                                duration=(now - ti.queued_dttm).total_seconds(),
                                failure_reason=(f"stuck in queued for more than {waited:.0f} s "
                                                f"(task_queued_timeout), requeued {ti.stuck_in_queued_count} times"))
            changed += 1
        return changed

    def _revoke(self, executor: BaseExecutor, ti: TaskInstance) -> None:
        try:
            executor.revoke_task(ti=ti)
        except NotImplementedError:
            try:
                executor.cleanup_stuck_queued_tasks([ti])
            except NotImplementedError:
                pass
        except Exception:  # noqa: BLE001
            log.exception("could not revoke %s", ti.key)
        executor.queued_tasks.pop(ti.key, None)
        executor.running.discard(ti.key)

    def _adopt_or_reset_orphans(self) -> int:
        """Tries queued or running for an earlier scheduler: adopt them or start them over.

        Only the lease holder queues tries, so once this job holds the lease every try of
        another job belongs to a scheduler that can no longer write (dead, or paused and
        fenced out), whatever its heartbeat says: there is nothing to wait for.
        """
        self._next_orphan_check = time.monotonic() + self._orphan_every
        orphans: list[tuple[ActiveRun, TaskInstance]] = []
        for run in self.runs.values():
            for ti in run.tis.values():
                if ti.state in (S.QUEUED, S.RUNNING) and ti.queued_by_job_id != self.job_id:
                    ti.dag_fileloc = run.dag.subdir  # lets an executor rebuild the try's command
                    orphans.append((run, ti))
        if not orphans:
            return 0
        by_executor: dict[int, tuple[BaseExecutor, list[tuple[ActiveRun, TaskInstance]]]] = {}
        for run, ti in orphans:
            executor = self.executor_for(ti) or self.default_executor
            by_executor.setdefault(id(executor), (executor, []))[1].append((run, ti))
        for executor, items in by_executor.values():
            tis = [ti for _run, ti in items]
            try:
                not_adopted = {id(ti) for ti in executor.try_adopt_task_instances(tis)}
            except Exception:  # noqa: BLE001
                log.exception("adoption by %s failed; resetting its tasks", executor)
                not_adopted = {id(ti) for ti in tis}
            for run, ti in items:
                if id(ti) in not_adopted:
                    log.warning("resetting orphaned task %s (its scheduler job %s is gone)", ti.key,
                                ti.queued_by_job_id)
                    # The lost try is not charged to the task's own retries.
                    self._set_state(run, ti, S.SCHEDULED, max_tries=ti.max_tries + 1, external_executor_id=None)
                    self._push_ready(ti)
                else:
                    log.info("adopted %s from scheduler job %s", ti.key, ti.queued_by_job_id)
                    ti.queued_by_job_id = self.job_id
                    self._dirty_tis.add(ti.id)
        return len(orphans)

    # ------------------------------------------------------------------ persistence
    def _heartbeat_job(self) -> None:
        try:
            with create_session() as session:
                session.execute(update(Job).where(Job.id == self.job_id).values(latest_heartbeat=utcnow()))
        except SQLAlchemyError as exc:
            log.error("scheduler heartbeat failed: %s", describe_db_error(exc))

    def _flush(self) -> None:
        """Write every change of this step in one transaction; on failure keep them for next time."""
        if not self._dirty_tis and not self._dirty_runs:
            return
        ti_rows = []
        for ti_id in self._dirty_tis:
            entry = self._ti_by_id.get(ti_id) or self._finished_tis.get(ti_id)
            if entry is None:
                continue
            ti = entry[1]
            row = {column: getattr(ti, column) for column in TI_FLUSH_COLUMNS}
            row["id"] = ti.id
            ti_rows.append(row)
        run_rows = []
        for run_key in self._dirty_runs:
            run = self.runs.get(run_key) or self._finished_runs.get(run_key)
            if run is None:
                continue
            row = {column: getattr(run.dag_run, column) for column in RUN_FLUSH_COLUMNS}
            row["id"] = run.dag_run.id
            run_rows.append(row)
        with self._fenced_session() as session:
            if ti_rows:
                session.execute(update(TaskInstance), ti_rows)
            if run_rows:
                session.execute(update(DagRun), run_rows)
        self._dirty_tis.clear()
        self._dirty_runs.clear()
        self._finished_runs.clear()
        self._finished_tis.clear()

    # ------------------------------------------------------------------ introspection
    def active_run_ids(self) -> set[tuple[str, str]]:
        return {(run.dag_id, run.run_id) for run in self.runs.values()}

    def task_instances_in_flight(self) -> int:
        return self.limits.total


def _host_and_pid(info) -> tuple[str | None, int | None]:
    if isinstance(info, dict):
        return info.get("hostname"), info.get("pid")
    if isinstance(info, str):
        return info, None
    return None, None


def _reason_text(info) -> str | None:
    if info is None:
        return None
    if isinstance(info, dict):
        return info.get("reason") or info.get("error")
    return str(info)


def tis_of(runs: Iterable[ActiveRun]) -> Iterable[TaskInstance]:
    for run in runs:
        yield from run.tis.values()
