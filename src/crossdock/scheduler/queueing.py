"""Ready tasks out to executors: by priority, within every limit, routed once per try.

An ``EmptyOperator`` (with no callback that only a try could run) is not sent anywhere: it
succeeds here, as Airflow's scheduler does it, and takes no executor slot.

A try is routed here and nowhere else (:class:`~crossdock.executors.routing.ExecutorRouter`):
the executor and the reason are recorded on the task instance with its ``queued`` state,
so ``tasks states-for-dag-run`` can say why a task ran where it did and a hybrid executor
hands the try to the child it was routed to without deciding again.

``[executor_routing] overflow`` rules may move a try away from a backlogged executor; the
backlogs are read from the table at most once a step (only when some rule exists and a
task is routed) and counted on as tries go out, so a burst stops filling one side at the limit.

A task naming a pool the scheduler has not seen makes it read the pools again (once a
step) before failing the task, so a pool created just before a trigger is used at once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from crossdock.database import create_session, describe_db_error
from crossdock.executors.base_executor import BaseExecutor
from crossdock.executors.overflow import Backlogs
from crossdock.executors.routing import ExecutorRouter, Route
from crossdock.models import Pool, TaskInstance
from crossdock.runner.command import task_run_command
from crossdock.scheduler.active_run import ActiveRun
from crossdock.scheduler.task_table import TaskTable
from crossdock.scheduler.external_state import external_state
from crossdock.scheduler.value_handover import ValueHandoverError, handover_for
from crossdock.state import TaskInstanceState as S

log = logging.getLogger("crossdock.scheduler")


def read_pool_slots(session: Session) -> dict[str, int]:
    """Pool name → slots, as stored."""
    return {name: slots for name, slots in session.execute(select(Pool.pool, Pool.slots))}


class TaskQueuer:
    """Pops ready tasks and queues them on their executors while there is room."""

    def __init__(self, table: TaskTable, router: ExecutorRouter, executors: list[BaseExecutor], *,
                 default_max_active_tasks: int):
        self.table = table
        self.router = router
        self.executors = executors
        self.default_max_active_tasks = default_max_active_tasks
        self.job_id: int | None = None
        #: True once a try went to an executor whose tries outlive this process (workers, pods).
        self.sent_outliving_tries = False

    def queue_ready_tasks(self, now: datetime) -> int:
        table = self.table
        limits = table.limits
        queued = 0
        held_back: list[tuple[int, int, int]] = []
        # Once every executor is full nothing more can go out this step: stop there rather
        # than pop (and push back) every waiting task, which made a loop with thousands
        # of ready tasks cost as much as queueing them.
        full: set[int] = set()
        pools_reread = False
        executor_count = len(self.executors) or 1
        backlogs = Backlogs(self._queued_tries)
        while table.has_ready() and limits.total < limits.parallelism and len(full) < executor_count:
            item, entry = table.pop_ready()
            if entry is None:
                continue
            run, ti = entry
            task = run.dag.tasks.get(ti.task_id)
            if task is not None and task.is_empty:  # EmptyOperator: nothing to run, no slot taken
                table.set_state(run, ti, S.SUCCESS, try_number=ti.try_number + 1, queued_dttm=now,
                                start_date=now, end_date=now, duration=0.0, failure_reason=None,
                                routing_reason="EmptyOperator: succeeded in the scheduler, no try was sent")
                queued += 1
                continue
            named = task.executor if task is not None else ti.executor
            route = self.router.route(ti.queue, named)
            if route is not None and self.router.overflow_rules:
                route = self.router.overflow(route, ti.queue, overflow=getattr(task, "overflow", None),
                                             pinned=bool(named), backlogs=backlogs, now=now)
            if route is None:
                table.set_state(run, ti, S.FAILED, end_date=now, start_date=now, duration=0.0,
                                failure_reason=f"executor {ti.executor!r} is not configured in [core] executor")
                queued += 1
                continue
            executor = route.executor
            if task is not None and task.max_active_tis_per_dag and self._task_busy(ti) >= task.max_active_tis_per_dag:
                held_back.append(item)
                continue
            if id(executor) in full or executor.slots_available <= 0:
                full.add(id(executor))
                held_back.append(item)
                continue
            reason = limits.refuse_reason(
                dag_id=ti.dag_id, max_active_tasks=run.dag.max_active_tasks or self.default_max_active_tasks,
                pool=ti.pool, slots=ti.pool_slots)
            if reason == "unknown_pool" and not pools_reread:
                pools_reread = True  # a pool created since the last refresh counts at once
                limits.pool_slots = self._reread_pools(limits.pool_slots)
                reason = limits.refuse_reason(
                    dag_id=ti.dag_id, max_active_tasks=run.dag.max_active_tasks or self.default_max_active_tasks,
                    pool=ti.pool, slots=ti.pool_slots)
            if reason == "unknown_pool":
                table.set_state(run, ti, S.FAILED, end_date=now, start_date=now, duration=0.0,
                                failure_reason=f"pool {ti.pool!r} does not exist")
                queued += 1
                continue
            if reason is not None:
                held_back.append(item)
                continue
            self._send(run, ti, route, now)
            if ti.state == S.QUEUED:
                backlogs.add(route.name, ti.queue, now)
            queued += 1
        table.hold_back(held_back)
        return queued

    @staticmethod
    def _reread_pools(known: dict[str, int]) -> dict[str, int]:
        """The pools as stored now; the ones known so far when the database cannot say."""
        try:
            with create_session() as session:
                return read_pool_slots(session)
        except SQLAlchemyError as exc:
            log.error("could not read the pools: %s", describe_db_error(exc))
            return known

    def _queued_tries(self) -> Iterator[tuple[str | None, str | None, datetime | None]]:
        """(executor name, queue, queued at) of every try handed over and not yet running."""
        for ti_id in self.table.queued_ids:
            entry = self.table.by_id(ti_id)
            if entry is not None:
                ti = entry[1]
                yield ti.executor, ti.queue, ti.queued_dttm

    def _task_busy(self, ti: TaskInstance) -> int:
        """Queued or running instances of ``ti``'s task over all active runs of its DAG."""
        return sum(1 for run in self.table.runs.values() if run.dag_id == ti.dag_id
                   for other in run.tis.values()
                   if other.task_id == ti.task_id and other.state in (S.QUEUED, S.RUNNING))

    def _send(self, run: ActiveRun, ti: TaskInstance, route: Route, now: datetime) -> None:
        executor = route.executor
        slot = (ti.task_id, ti.map_index)
        if slot[0] in run.values.by_task:  # a new try starts without the values of the last one
            run.values.clear(slot)
            self.table.values_changed(run)
        try:
            inputs = handover_for(run.dag, ti.task_id, run.values, conf=run.dag_run.conf,
                                  run_type=run.dag_run.run_type, run_id=run.run_id,
                                  run={**run.facts, **run.sensors.get(slot, {}),
                                       **external_state(run, run.dag.tasks.get(ti.task_id))})
        except ValueHandoverError as exc:
            self.table.set_state(run, ti, S.FAILED, end_date=now, start_date=now, duration=0.0,
                                 try_number=ti.try_number + 1, failure_reason=str(exc))
            return
        # The route is recorded first: a hybrid's new_external_id and queue_command then
        # find the child by the name on the task instance instead of routing again.
        ti.executor = route.name
        self.table.set_state(run, ti, S.QUEUED, try_number=ti.try_number + 1, queued_dttm=now,
                             queued_by_job_id=self.job_id, external_executor_id=executor.new_external_id(ti),
                             hostname=None, pid=None, start_date=None, end_date=None, duration=None,
                             failure_reason=None, routing_reason=route.reason)
        if not executor.is_local:
            self.sent_outliving_tries = True
        command = task_run_command(ti.key, subdir=run.dag.subdir, logical_date=run.dag_run.logical_date,
                                   inputs=inputs)
        executor.queue_command(ti, command, priority=ti.priority_weight or 1, queue=ti.queue)
