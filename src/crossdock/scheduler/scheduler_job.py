"""The scheduler loop: DAG runs in, executor work out, outcomes recorded.

One loop step:

1. pick up newly triggered runs and due scheduled intervals (one query);
2. re-check dependencies only of tasks whose upstream changed;
3. queue ready tasks by priority within parallelism, per-DAG and pool limits;
4. ``executor.heartbeat()``;
5. apply the executors' events (success, failure → retry or fail, running, queued);
6. handle tasks stuck in queued, finished runs, the job heartbeat;
7. flush every change of the step in one transaction (bulk insert / bulk update).

This module is the loop and the job's lifecycle (lease, signals, shutdown); each step's
work lives in a module of its own: :mod:`.task_table` (the tasks in memory and their
state machine), :mod:`.run_loading`, :mod:`.queueing`, :mod:`.event_application`,
:mod:`.recovery`, :mod:`.persistence` and :mod:`.dag_parsing`.

User code never runs here: DAG files are parsed in child processes, tasks run in the
executor's workers. An exception from an executor or the database is logged and the
loop goes on; changes not yet flushed are kept and flushed on the next step.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError

from crossdock.configuration import conf
from crossdock.database import create_session, describe_db_error
from crossdock.executors.base_executor import BaseExecutor
from crossdock.executors.routing import ExecutorRouter
from crossdock.models import Job
from crossdock.models.base import utcnow
from crossdock.scheduler import persistence
from crossdock.scheduler.active_run import ActiveRun
from crossdock.scheduler.dag_callbacks import DagCallbacks
from crossdock.scheduler.dag_parsing import DagFolderParser
from crossdock.scheduler.event_application import EventApplier
from crossdock.scheduler.leadership import LeadershipLost, SchedulerLease
from crossdock.scheduler.limits import SlotLimits
from crossdock.scheduler.queueing import TaskQueuer, read_pool_slots
from crossdock.scheduler.recovery import Recovery
from crossdock.scheduler.run_loading import RunLoader
from crossdock.scheduler.run_timeouts import time_out_runs
from crossdock.scheduler.settings import SchedulerSettings
from crossdock.scheduler.state_requests import StateRequests
from crossdock.scheduler.task_table import StateListener, TaskTable

log = logging.getLogger("crossdock.scheduler")

JOB_TYPE = "SchedulerJob"
#: How often (seconds) due scheduled intervals and stuck queued tasks are looked for.
HOUSEKEEPING_INTERVAL = 1.0
#: How often (seconds) pool sizes are re-read.
POOL_REFRESH_INTERVAL = 10.0
#: How often (seconds) a standby looks at the lease.
STANDBY_POLL_INTERVAL = 0.5


class SchedulerJob:
    """Runs the loop; ``executors[0]`` is the default, the others are chosen by a task's ``executor``.

    :param executors: started by :meth:`run`, ended when it returns.
    :param on_state_change: called as ``(ti, old_state, new_state)`` on every transition
        (the demo prints progress with it). It must be quick and must not raise.
    :param parse_dags: parse the DAG folder at start and every ``dag_dir_list_interval``.
    """

    def __init__(self, *, executors: list[BaseExecutor], on_state_change: StateListener | None = None,
                 parse_dags: bool = True, dags_folder: str | None = None):
        self.router = ExecutorRouter(executors)
        self.dag_callbacks = DagCallbacks()
        self.executors = executors
        self.default_executor = executors[0]
        self.settings = settings = SchedulerSettings.from_conf()
        self.parse_dags = parse_dags
        self.dags_folder = dags_folder or settings.dags_folder
        self.job_id: int | None = None
        self.lease: SchedulerLease | None = None
        #: True once another scheduler took the lease from this one; it wrote nothing since.
        self.lost_leadership = False
        self._database_lost = False
        self.hostname = settings.hostname or socket.getfqdn()

        self.table = TaskTable(SlotLimits(parallelism=settings.parallelism, pool_slots={}), on_state_change)
        self.queuer = TaskQueuer(self.table, self.router, executors,
                                 default_max_active_tasks=settings.max_active_tasks_per_dag)
        self.events = EventApplier(self.table, uncharged_losses=settings.num_stuck_in_queued_retries)
        self.recovery = Recovery(self.table, self.router, task_queued_timeout=settings.task_queued_timeout,
                                 stuck_retries=settings.num_stuck_in_queued_retries)
        self.parser = DagFolderParser(self.dags_folder, settings.dag_dir_list_interval)
        self.loader: RunLoader | None = None
        #: Users' clears and marks (see state_requests), once the lease exists.
        self.state_requests: StateRequests | None = None

        self._last_poll = self._last_heartbeat = self._last_housekeeping = 0.0
        self._last_pool_refresh = self._next_orphan_check = 0.0
        self._stop = threading.Event()
        self.loop_count = 0
        self.last_loop_seconds = 0.0
        #: Called with each step's ``last_loop_seconds`` (the metrics); quick, must not raise.
        self.loop_listeners: list[Callable[[float], None]] = []

    # ------------------------------------------------------------------ views
    @property
    def runs(self) -> dict[int, ActiveRun]:
        """The runs being worked on, by DagRun row id."""
        return self.table.runs

    @property
    def limits(self) -> SlotLimits:
        return self.table.limits

    @property
    def on_state_change(self) -> StateListener | None:
        return self.table.on_state_change

    @on_state_change.setter
    def on_state_change(self, listener: StateListener | None) -> None:
        self.table.on_state_change = listener

    @property
    def state_listeners(self) -> list[StateListener]:
        """Listeners called after ``on_state_change`` on every transition; append to add one."""
        return self.table.state_listeners

    def task_instances_in_flight(self) -> int:
        return self.limits.total

    def stop(self) -> None:
        """Ask the loop to finish its step and shut down (safe from a signal handler)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ start and leadership
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
        self.lease = SchedulerLease(job_id=self.job_id, takeover_seconds=self.settings.standby_takeover_seconds)
        self.loader = RunLoader(self.table, self.lease)
        self.state_requests = StateRequests(self.table, self.router, self.lease, job_id=self.job_id)
        self.table.mapping.lease = self.lease
        self.table.mapping.max_map_length = conf.getint("core", "max_map_length")
        self.queuer.job_id = self.job_id
        if not self._wait_for_lease():
            return False
        for executor in self.executors:
            executor.job_id = self.job_id
            executor.start()
        if self.parse_dags:
            self.parser.parse_once()
        self._refresh_pools()
        self.loader.load_scheduled_dags()
        self.loader.load_active_runs()
        self._adopt_or_reset_orphans()
        self._flush()
        if self.parse_dags:
            self.parser.start(self._stop)
        log.info("scheduler job %s active with %s", self.job_id,
                 ", ".join(type(e).__name__ for e in self.executors))
        return True

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
            if time.monotonic() - last_heartbeat >= self.settings.heartbeat_seconds:
                last_heartbeat = time.monotonic()
                persistence.heartbeat_job(self.job_id)
            self._stop.wait(min(STANDBY_POLL_INTERVAL, self.lease.timeout / 4))
        return False

    def _ensure_leader(self) -> None:
        """Renew the lease when due, so nothing is sent or written on an expired one."""
        if self.lease.held and not self.lease.renewal_due:
            return
        with create_session() as session:
            self.lease.fence(session)

    # ------------------------------------------------------------------ the loop
    def run(self, *, stop_when: Callable[["SchedulerJob"], bool] | None = None,
            max_loops: int | None = None, handle_signals: bool = False) -> None:
        """Run until :meth:`stop`, ``stop_when(self)`` is true, or ``max_loops`` steps."""
        if handle_signals:
            self._install_signal_handlers()
        if not self.start():
            persistence.close_job(self.job_id, "success")
            return
        clean = False
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                changed = self.loop_once()
                self.last_loop_seconds = time.perf_counter() - started
                for listener in self.loop_listeners:
                    try:
                        listener(self.last_loop_seconds)
                    except Exception:  # noqa: BLE001 - a listener must not stop the loop
                        log.exception("loop listener failed")
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
        loader = self.loader
        if mono - self._last_poll >= self.settings.new_runs_poll_interval:
            self._last_poll = mono
            changed += self._guard(self.state_requests.apply_pending)
            changed += self._guard(loader.load_new_runs)
        if mono - self._last_housekeeping >= HOUSEKEEPING_INTERVAL:
            self._last_housekeeping = mono
            if self.parser.changed.is_set():
                self.parser.changed.clear()
                self._guard(loader.load_scheduled_dags)
            created = self._guard(lambda: loader.create_scheduled_runs(now))
            if created:
                self._last_poll = 0.0  # start the new runs on the next step
            changed += created
            changed += self._guard(lambda: self.recovery.fail_stuck_queued(now))
        if mono - self._last_pool_refresh >= POOL_REFRESH_INTERVAL:
            self._guard(self._refresh_pools)
        if mono >= self._next_orphan_check:
            changed += self._guard(self._adopt_or_reset_orphans)
        changed += self._guard(lambda: time_out_runs(self.table, self.router, now))
        changed += self.table.release_due_retries(now)
        changed += self.table.check_dependencies()
        changed += self._guard(self.table.mapping.expand_pending)
        changed += self.queuer.queue_ready_tasks(now)
        if self.queuer.sent_outliving_tries:
            # Tries bound for workers or pods are in the database before any is sent, so
            # the scheduler that takes over after a crash knows every try that may be out.
            # (A local executor's tries end with this process: nothing to adopt.)
            if not self._db_reachable_for(self._flush):
                return changed
            self.queuer.sent_outliving_tries = False
        if not self._db_reachable_for(self._ensure_leader):
            return changed
        for executor in self.executors:
            self._guard(executor.heartbeat)
        changed += self._process_events()
        already_finished = set(self.table.finished_runs)
        changed += self.table.finish_runs()
        for run_key, run in self.table.finished_runs.items():
            if run_key not in already_finished:
                self.dag_callbacks.run_ended(run)
        self.dag_callbacks.reap()
        if mono - self._last_heartbeat >= self.settings.heartbeat_seconds:
            self._last_heartbeat = mono
            persistence.heartbeat_job(self.job_id)
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
        settings = self.settings
        timeout = settings.max_loop_sleep
        due = self.table.next_retry_due()
        if due is not None:
            timeout = min(timeout, max(settings.min_loop_sleep, (due - utcnow()).total_seconds()))
        timeout = min(timeout, max(settings.min_loop_sleep,
                                   settings.new_runs_poll_interval - (time.monotonic() - self._last_poll)))
        if len(self.executors) == 1:
            self.default_executor.wait_for_events(timeout)
        else:
            time.sleep(min(timeout, settings.min_loop_sleep * 5))

    # ------------------------------------------------------------------ steps
    def _process_events(self) -> int:
        changed = 0
        for executor in self.executors:
            try:
                events = executor.pop_task_events()
            except Exception:  # noqa: BLE001
                log.exception("could not read the events of %s", executor)
                continue
            for key, event in events.items():
                changed += self.events.apply(key, event)
        return changed

    def _adopt_or_reset_orphans(self) -> int:
        self._next_orphan_check = time.monotonic() + self.settings.orphaned_tasks_check_interval
        return self.recovery.adopt_or_reset_orphans(self.job_id)

    def _refresh_pools(self) -> None:
        self._last_pool_refresh = time.monotonic()
        with create_session() as session:
            self.limits.pool_slots = read_pool_slots(session)

    def _flush(self) -> None:
        persistence.flush(self.table, self.lease, requests=self.state_requests)

    # ------------------------------------------------------------------ signals and shutdown
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
            self.table.finish_runs()
            self._guard_shutdown(self._flush)
            self._guard_shutdown(self._release_lease)
        persistence.close_job(self.job_id, "success" if clean and not self.lost_leadership else "failed")

    def _guard_shutdown(self, step: Callable[[], object]) -> None:
        try:
            self._guard(step)
        except LeadershipLost as exc:
            self.lost_leadership = True
            log.error("%s while shutting down; the active scheduler records what is left", exc)

    def _release_lease(self) -> None:
        with create_session() as session:
            self.lease.release(session)
