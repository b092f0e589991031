"""The scheduler's in-memory task table and the one place a task instance changes state.

The scheduler is the only writer of task state (design principle 1), so this table is
the truth between flushes. Every transition goes through :meth:`TaskTable.set_state`,
which keeps the slot counts, the queued set, the runs' unfinished counts, the dirty set
the flush writes and the downstream re-checks consistent with the state; a concern that
changed ``ti.state`` by hand would break all five at once.

Lookups are by primary key (what executors report) and by row id (what the heaps hold);
ready tasks wait in a priority heap, retries in a heap by due time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from datetime import datetime
from typing import Callable, Iterator

from crossdock.models import TaskInstance
from crossdock.models.base import utcnow
from crossdock.scheduler import trigger_rules
from crossdock.scheduler.active_run import ActiveRun
from crossdock.scheduler.limits import SlotLimits
from crossdock.scheduler.past_dependencies import PastDependencies
from crossdock.scheduler.task_mapping import TaskMapping
from crossdock.state import DagRunState, FINISHED_STATES
from crossdock.state import TaskInstanceState as S

log = logging.getLogger("crossdock.scheduler")

StateListener = Callable[[TaskInstance, "str | None", str], None]
Entry = tuple[ActiveRun, TaskInstance]
BUSY_STATES = (S.QUEUED, S.RUNNING)
#: States that wait for a due time in the retry heap: a retry, a sensor's next poke.
WAITING_STATES = (S.UP_FOR_RETRY, S.UP_FOR_RESCHEDULE)


class TaskTable:
    """Active runs, their task instances, and the queues of work derived from their states."""

    def __init__(self, limits: SlotLimits, on_state_change: StateListener | None = None):
        self.limits = limits
        self.on_state_change = on_state_change
        #: More listeners called like ``on_state_change`` (the metrics), which stays the caller's own.
        self.state_listeners: list[StateListener] = []
        #: DagRun row id → run being worked on.
        self.runs: dict[int, ActiveRun] = {}
        self._by_primary: dict[tuple[str, str, str, int], Entry] = {}
        self._by_id: dict[int, Entry] = {}
        self._ready: list[tuple[int, int, int]] = []  # (-priority, seq, ti id)
        self._ready_ids: set[int] = set()
        self._retry_heap: list[tuple[datetime, int, int]] = []  # (due, seq, ti id)
        self.queued_ids: set[int] = set()
        self._seq = itertools.count()
        #: What the next flush writes: task instance ids and run ids changed since the last one.
        self.dirty_tis: set[int] = set()
        self.dirty_runs: set[int] = set()
        #: Finished runs (and their changed task instances) kept until the flush has written them.
        self.finished_runs: dict[int, ActiveRun] = {}
        self.finished_tis: dict[int, Entry] = {}
        #: Runs whose XComs changed since the last flush, by run id.
        self.dirty_values: dict[int, ActiveRun] = {}
        self.past = PastDependencies(self)
        self.mapping = TaskMapping(self)

    # -- lookups -----------------------------------------------------------------
    def by_primary(self, primary: tuple[str, str, str, int]) -> Entry | None:
        return self._by_primary.get(primary)

    def by_id(self, ti_id: int) -> Entry | None:
        return self._by_id.get(ti_id)

    def entry_to_flush(self, ti_id: int) -> Entry | None:
        return self._by_id.get(ti_id) or self.finished_tis.get(ti_id)

    def run_to_flush(self, run_key: int) -> ActiveRun | None:
        return self.runs.get(run_key) or self.finished_runs.get(run_key)

    def active_count(self, dag_id: str) -> int:
        return sum(1 for run in self.runs.values() if run.dag_id == dag_id)

    def in_flight(self) -> Iterator[Entry]:
        """Every queued or running task instance of an active run."""
        for run in self.runs.values():
            for ti in run.tis.values():
                if ti.state in BUSY_STATES:
                    yield run, ti

    def next_retry_due(self) -> datetime | None:
        return self._retry_heap[0][0] if self._retry_heap else None

    def mark_dirty(self, ti: TaskInstance) -> None:
        """A field changed outside a transition (an external id, an adopting job)."""
        self.dirty_tis.add(ti.id)

    def values_changed(self, run: ActiveRun) -> None:
        """The run's XComs changed; the next flush writes them."""
        self.dirty_values[run.dag_run.id] = run

    def written(self) -> None:
        """The flush wrote everything dirty: forget it, and the finished runs kept for it."""
        for run in self.dirty_values.values():
            run.values.written()
        self.dirty_values.clear()
        self.dirty_tis.clear()
        self.dirty_runs.clear()
        self.finished_runs.clear()
        self.finished_tis.clear()

    # -- runs in and out ---------------------------------------------------------
    def add_run(self, run_key: int, run: ActiveRun) -> None:
        """Take a loaded run; its task instances are placed by their current state."""
        self.runs[run_key] = run
        for ti in run.tis.values():
            self._index(run, ti)

    def renumber(self, run: ActiveRun, ti: TaskInstance, map_index: int) -> None:
        """A mapped task's placeholder becomes instance ``map_index`` (see task_mapping)."""
        self._by_primary.pop((ti.dag_id, ti.task_id, ti.run_id, ti.map_index), None)
        run.renumber(ti, map_index)
        self._by_primary[(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)] = (run, ti)

    def add_instance(self, run: ActiveRun, ti: TaskInstance) -> None:
        """A task instance created while its run is active (a mapped task's expansion)."""
        run.add(ti)
        self._index(run, ti)

    def _index(self, run: ActiveRun, ti: TaskInstance) -> None:
        self._by_primary[(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)] = (run, ti)
        self._by_id[ti.id] = (run, ti)
        state = ti.state
        if state in BUSY_STATES:
            self.limits.occupy(ti.dag_id, ti.pool, ti.pool_slots)
            if state == S.QUEUED:
                self.queued_ids.add(ti.id)
        elif state == S.SCHEDULED:
            self.push_ready(ti)
        elif state in WAITING_STATES:
            self.push_retry(ti, ti.next_retry_at or utcnow())
        elif state is None:
            run.pending_checks.add(ti.task_id)

    def finish_runs(self) -> int:
        """Runs with no unfinished task end (success or failed) and leave the table."""
        finished = 0
        for run_key, run in list(self.runs.items()):
            if run.unfinished > 0:
                continue
            dag_run = run.dag_run
            succeeded = run.all_succeeded() and not run.timed_out
            dag_run.state = (DagRunState.SUCCESS if succeeded else DagRunState.FAILED).value
            dag_run.end_date = utcnow()
            self.dirty_runs.add(run_key)
            self.finished_runs[run_key] = run
            del self.runs[run_key]
            self.past.forget(run)
            for ti in run.tis.values():
                self._by_primary.pop((ti.dag_id, ti.task_id, ti.run_id, ti.map_index), None)
                self._by_id.pop(ti.id, None)
                if ti.id in self.dirty_tis:
                    self.finished_tis[ti.id] = (run, ti)
            finished += 1
            log.info("DAG run %s of %s finished: %s", dag_run.run_id, dag_run.dag_id, dag_run.state)
        return finished

    # -- the transition ------------------------------------------------------------
    def set_state(self, run: ActiveRun, ti: TaskInstance, new_state: str | None, **fields) -> None:
        old = ti.state
        was_busy = old in BUSY_STATES
        is_busy = new_state in BUSY_STATES
        if was_busy and not is_busy:
            self.limits.release(ti.dag_id, ti.pool, ti.pool_slots)
        elif is_busy and not was_busy:
            self.limits.occupy(ti.dag_id, ti.pool, ti.pool_slots)
        if new_state == S.QUEUED:
            self.queued_ids.add(ti.id)
        else:
            self.queued_ids.discard(ti.id)
        if (old in FINISHED_STATES) != (new_state in FINISHED_STATES):
            run.unfinished += -1 if new_state in FINISHED_STATES else 1
        ti.state = new_state
        for name, value in fields.items():
            setattr(ti, name, value)
        self.dirty_tis.add(ti.id)
        if new_state in FINISHED_STATES:
            run.pending_checks.update(run.downstream_ids(ti.task_id))
            if self.past.previous:
                self.past.finished(run)
        if old != new_state and (self.on_state_change is not None or self.state_listeners):
            for listener in (self.on_state_change, *self.state_listeners):
                if listener is None:
                    continue
                try:
                    listener(ti, old, new_state)
                except Exception:  # noqa: BLE001 - a listener must not break scheduling
                    log.exception("state listener failed")

    def reschedule(self, run: ActiveRun, ti: TaskInstance, **fields) -> None:
        """Back to scheduled and onto the ready heap (a retry that is due, a lost try)."""
        self.set_state(run, ti, S.SCHEDULED, **fields)
        self.push_ready(ti)

    # -- ready and retry heaps -------------------------------------------------------
    def push_ready(self, ti: TaskInstance) -> None:
        if ti.id not in self._ready_ids:
            self._ready_ids.add(ti.id)
            heapq.heappush(self._ready, (-(ti.priority_weight or 1), next(self._seq), ti.id))

    def has_ready(self) -> bool:
        return bool(self._ready)

    def pop_ready(self) -> tuple[tuple[int, int, int], Entry | None]:
        """The highest-priority ready item and its entry (None when no longer scheduled)."""
        item = heapq.heappop(self._ready)
        self._ready_ids.discard(item[2])
        entry = self._by_id.get(item[2])
        if entry is None or entry[1].state != S.SCHEDULED:
            return item, None
        return item, entry

    def hold_back(self, items: list[tuple[int, int, int]]) -> None:
        """Put popped ready items back, in their original order of priority and arrival."""
        for item in items:
            self._ready_ids.add(item[2])
            heapq.heappush(self._ready, item)

    def push_retry(self, ti: TaskInstance, due: datetime) -> None:
        heapq.heappush(self._retry_heap, (due, next(self._seq), ti.id))

    def release_due_retries(self, now: datetime) -> int:
        released = 0
        while self._retry_heap and self._retry_heap[0][0] <= now:
            _due, _seq, ti_id = heapq.heappop(self._retry_heap)
            entry = self._by_id.get(ti_id)
            if entry is None or entry[1].state not in WAITING_STATES:
                continue
            run, ti = entry
            self.reschedule(run, ti, next_retry_at=None)
            released += 1
        return released

    # -- dependencies ----------------------------------------------------------------
    def check_dependencies(self) -> int:
        """Re-check only the tasks whose upstream changed; ready ones go onto the heap."""
        changed = 0
        for run in list(self.runs.values()):
            while run.pending_checks:
                task_id = run.pending_checks.pop()
                for ti in list(run.instances(task_id)):
                    if ti.state is None:
                        changed += self._check(run, task_id, ti)
        return changed

    def _check(self, run: ActiveRun, task_id: str, ti: TaskInstance) -> int:
        """Decide one waiting task instance: run it, settle it, or leave it waiting (0)."""
        task = run.dag.tasks.get(task_id)
        if task is None:
            self.set_state(run, ti, S.REMOVED)
            return 1
        try:
            verdict = trigger_rules.evaluate(task.trigger_rule, run.upstream_states(task_id))
        except trigger_rules.UnknownTriggerRule as exc:  # user input never stops the scheduler
            now = utcnow()
            self.set_state(run, ti, S.FAILED, start_date=now, end_date=now, duration=0.0,
                           failure_reason=f"{exc}; this crossdock knows "
                                          f"{', '.join(sorted(trigger_rules.RULES))}")
            return 1
        if verdict == trigger_rules.WAIT:
            return 0
        if verdict == trigger_rules.RUN and not self.past.allows(run, task):
            return 0  # depends_on_past: checked again when the previous run's task finishes
        if verdict == trigger_rules.RUN and task.mapped and ti.map_index < 0:
            return self.mapping.ready(run, ti, task)  # expanded into its map indexes first
        if verdict == trigger_rules.RUN:
            self.reschedule(run, ti)
        else:
            now = utcnow()
            self.set_state(run, ti, verdict, start_date=now, end_date=now, duration=0.0)
        return 1
