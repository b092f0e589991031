"""One DAG run decided in this process, each try a real one: the engine of ``crossdock dags test``.

No scheduler, no workers and no metadata database. What happens between tries is what
the scheduler would do, with the scheduler's own pieces rather than a copy of them:
trigger rules (:func:`crossdock.scheduler.trigger_rules.evaluate`), the values handed to
each try (:func:`~crossdock.scheduler.value_handover.handover_for` over a
:class:`~crossdock.scheduler.value_handover.RunValues` kept in memory), what a branch or
a short-circuit skips (:func:`~crossdock.scheduler.event_application.unchosen_task_ids`),
retries (a task's ``retries``; none for a failure carrying
:data:`~crossdock.dag.exceptions.NO_RETRY_MARK`) and the run's state (success when every
task succeeded or was skipped, as :meth:`ActiveRun.all_succeeded` says).

Each try is ``crossdock tasks run …`` in a fork of this process, as a Celery worker runs
it (:mod:`crossdock.runner.fork`): its values go in through ``--inputs`` and come back
through its values line, and it writes its usual log file, which is copied to the
console while it runs. Tries run one at a time: of the tasks that may run, the one of
highest priority weight first, then by task id. A task waiting for a retry or for its
sensor's next poke steps aside meanwhile, as in the scheduler, so other ready tasks run;
only when nothing else can run does the engine sleep until the first of them is due. A
mapped task is expanded as the scheduler expands it
(:func:`~crossdock.scheduler.task_mapping.map_length`, ``[core] max_map_length``) and its
instances run one after another, each reported as ``task[i]``.

Differences from a scheduled run, on purpose: a retry waits its ``retry_delay`` capped at
:data:`RETRY_DELAY_CAP_SECONDS` (a test run should not sit out a five-minute backoff); a
sensor's next poke waits its full interval (it is waiting for something to happen). An
EmptyOperator succeeds without a try, as Airflow's scheduler does.
"""

from __future__ import annotations

import codecs
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from crossdock.dag.exceptions import NO_RETRY_MARK
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import InvalidCommandError, parse_logical_date, task_run_command
from crossdock.runner.fork import ForkResult, start_forked_command
from crossdock.runner.task_log import task_log_path
from crossdock.runner.try_values import split_outcome
from crossdock.scheduler import trigger_rules
from crossdock.scheduler.dag_runs import MANUAL
from crossdock.scheduler.event_application import unchosen_task_ids
from crossdock.scheduler.value_handover import RunValues, ValueHandoverError, handover_for
from crossdock.state import DagRunState, FINISHED_STATES
from crossdock.state import TaskInstanceState as S

#: The longest a retry waits in a test run, whatever the task's ``retry_delay`` says.
RETRY_DELAY_CAP_SECONDS = 5.0
#: How often a running try's log is copied to the console.
LOG_COPY_INTERVAL_SECONDS = 0.1
#: What the scheduler hands a sensor in reschedule mode with its next try (read by
#: :class:`crossdock.dag.sensors.BaseSensorOperator`: its timeout counts from the first poke).
SENSOR_FIRST_POKE_KEY = "sensor_first_poke"
SENSOR_POKES_KEY = "sensor_pokes"
#: States in which a task waits for a due time before its next try.
WAITING_STATES = frozenset({S.UP_FOR_RETRY, S.UP_FOR_RESCHEDULE})


@dataclass(frozen=True)
class TaskReport:
    """How one task (or one try that is not its last) ended.

    :param duration: seconds the try took; None when no try ran (a trigger rule, a branch
        or an EmptyOperator decided).
    :param try_number: the try that ended; 0 when none ran.
    """

    task_id: str
    state: str
    duration: float | None
    reason: str | None = None
    try_number: int = 0


#: Runs one task command, copying its log to the console; returns how it ended.
TryRunner = Callable[[Sequence[str], Path], ForkResult]


class DagTestRun:
    """One run of a serialized DAG; :meth:`run` drives it to its end and returns its state.

    :param dag: the DAG as the scheduler sees it (:class:`~crossdock.dag.serialization.SerializedDAG`).
    :param run_id: the run's id; each try's command and log path carry it.
    :param logical_date: the run's logical date (its data interval is that date, as a
        manual run's is).
    :param conf: the run's conf, already checked against the DAG's params.
    :param report: called with each :class:`TaskReport` as it happens.
    :param run_try: how a try runs (default :func:`run_try_in_fork`).
    """

    def __init__(self, dag: Any, *, run_id: str, logical_date: datetime, conf: Mapping[str, Any] | None,
                 report: Callable[[TaskReport], None], run_try: TryRunner | None = None):
        self.dag = dag
        self.run_id = run_id
        self.logical_date = logical_date
        self.conf = dict(conf) if conf else None
        self.report = report
        self.run_try = run_try or run_try_in_fork
        self.values = RunValues()
        self.states: dict[str, str | None] = dict.fromkeys(dag.tasks)
        self.tries: Counter[str] = Counter()
        #: Failed tries charged to each task's retries (reschedules are not charged).
        self.failures: Counter[str] = Counter()
        #: task id → monotonic time its next try is due (a retry, a sensor's next poke).
        self.due: dict[str, float] = {}
        #: task id → what its next try is handed about its sensor's earlier pokes.
        self.sensors: dict[str, dict[str, str]] = {}

    # -- driving --------------------------------------------------------------------
    def run(self) -> str:
        while True:
            ready = self._ready()
            if ready:
                self._run_task(min(ready, key=lambda task: (-task.priority_weight, task.task_id)))
            elif self.due:
                time.sleep(max(0.0, min(self.due.values()) - time.monotonic()))
            else:
                break
        done_ok = all(state in (S.SUCCESS, S.SKIPPED) for state in self.states.values())
        return (DagRunState.SUCCESS if done_ok else DagRunState.FAILED).value

    def _ready(self) -> list[Any]:
        """The tasks that may start a try now; tasks a trigger rule decides are finished on the way.

        The serialized DAG lists its tasks in topological order, so one pass sees every
        decision made earlier in it.
        """
        now = time.monotonic()
        ready = []
        for task_id, task in self.dag.tasks.items():
            state = self.states[task_id]
            if state in WAITING_STATES:
                if self.due[task_id] <= now:
                    ready.append(task)
                continue
            if state is not None:
                continue
            upstream = [self.states[parent] for parent in task.upstream_task_ids if parent in self.states]
            try:
                verdict = trigger_rules.evaluate(task.trigger_rule, upstream)
            except trigger_rules.UnknownTriggerRule as exc:
                self._finish(task_id, S.FAILED, reason=f"{exc}; this crossdock knows "
                                                      f"{', '.join(sorted(trigger_rules.RULES))}")
                continue
            if verdict == trigger_rules.RUN:
                ready.append(task)
            elif verdict != trigger_rules.WAIT:
                self._finish(task_id, verdict, reason=_rule_reason(task.trigger_rule, upstream))
        return ready

    def _finish(self, task_id: str, state: str, *, reason: str | None = None, duration: float | None = None,
                try_number: int = 0) -> None:
        self.states[task_id] = state
        self.due.pop(task_id, None)
        if state in FINISHED_STATES:
            self.sensors.pop(task_id, None)
        self.report(TaskReport(task_id, state, duration, reason, try_number))

    # -- one try ----------------------------------------------------------------------
    def _run_task(self, task: Any) -> None:
        task_id = task.task_id
        if task.is_empty:
            self._finish(task_id, S.SUCCESS, reason="EmptyOperator: succeeded without a try")
            return
        if task.mapped:
            self._run_mapped(task)
            return
        self.tries[task_id] += 1
        try_number = self.tries[task_id]
        result = self._one_try(task, -1, try_number)
        if result is None:
            return
        if result.succeeded:
            self._succeeded(task, result, try_number)
        else:
            self._failed(task, result, try_number)

    def _one_try(self, task: Any, map_index: int, try_number: int) -> ForkResult | None:
        """Run one try; None when it could not start (the task is then finished as failed)."""
        task_id = task.task_id
        slot = (task_id, map_index)
        self.values.clear(slot)  # a new try starts without the values of the last one
        shown = task_id if map_index < 0 else f"{task_id}[{map_index}]"
        try:
            inputs = handover_for(self.dag, task_id, self.values, conf=self.conf, run_type=MANUAL,
                                  run_id=self.run_id, run=self.sensors.get(shown))
        except ValueHandoverError as exc:
            self._finish(task_id, S.FAILED, reason=str(exc), try_number=try_number)
            return None
        key = TaskInstanceKey(self.dag.dag_id, task_id, self.run_id, try_number, map_index)
        command = task_run_command(key, subdir=self.dag.subdir, logical_date=self.logical_date, inputs=inputs)
        log_path = task_log_path(dag_id=key.dag_id, task_id=task_id, run_id=self.run_id, try_number=try_number,
                                 map_index=map_index)
        started = time.monotonic()
        try:
            return self.run_try(command, log_path)
        except InvalidCommandError as exc:
            self._finish(task_id, S.FAILED, reason=str(exc), duration=time.monotonic() - started,
                         try_number=try_number)
            return None

    # -- a mapped task ------------------------------------------------------------------
    def _run_mapped(self, task: Any) -> None:
        """Expand it as the scheduler does, then run its instances one after another.

        Each instance is reported as ``task[i]``; the task's own state (what its
        downstream tasks' trigger rules see) is failed if any instance failed, skipped if
        all were skipped, success otherwise. An instance's retries and sensor pokes wait
        in place: the instances of one task run in order.
        """
        from types import SimpleNamespace

        from crossdock.configuration import conf
        from crossdock.scheduler.task_mapping import map_length

        task_id = task.task_id
        length, problem = map_length(SimpleNamespace(values=self.values), task)
        limit = conf.getint("core", "max_map_length")
        if problem is None and length > limit:
            problem = f"{task_id!r} would have {length} instances, over [core] max_map_length ({limit})"
        if problem is not None:
            self._finish(task_id, S.FAILED, reason=problem)
            return
        if length == 0:
            self._finish(task_id, S.SKIPPED, reason="mapped over an empty list")
            return
        ended = [self._run_instance(task, index) for index in range(length)]
        state = S.FAILED if S.FAILED in ended else S.SKIPPED if set(ended) == {S.SKIPPED} else S.SUCCESS
        self.states[task_id] = state

    def _run_instance(self, task: Any, index: int) -> str:
        shown = f"{task.task_id}[{index}]"
        try_number, failures = 0, 0
        while True:
            try_number += 1
            result = self._one_try(task, index, try_number)
            if result is None:
                return S.FAILED
            if not result.succeeded:
                reason = result.reason or f"task process exited with code {result.exit_code}"
                failures += 1
                if NO_RETRY_MARK in reason or failures > task.retries:
                    self.report(TaskReport(shown, S.FAILED, result.duration, reason, try_number))
                    return S.FAILED
                delay = min(task.retry_delay_for(try_number), RETRY_DELAY_CAP_SECONDS)
                self.report(TaskReport(shown, S.UP_FOR_RETRY, result.duration,
                                       f"{reason}; retry {failures} of {task.retries} in {delay:.1f}s", try_number))
                time.sleep(delay)
                continue
            values, outcome = split_outcome(result.values)
            if values:
                self.values.store((task.task_id, index), values)
            if outcome.get("state") == S.UP_FOR_RESCHEDULE:
                due_at = _parse_time(outcome.get("reschedule_at"))
                wait = max(0.0, (due_at - datetime.now(timezone.utc)).total_seconds()) if due_at else 0.0
                sensor = self.sensors.setdefault(shown, {SENSOR_FIRST_POKE_KEY: outcome.get("first_poke") or "",
                                                         SENSOR_POKES_KEY: "0"})
                sensor[SENSOR_POKES_KEY] = str(int(sensor[SENSOR_POKES_KEY]) + 1)
                self.report(TaskReport(shown, S.UP_FOR_RESCHEDULE, result.duration, f"next poke in {wait:.1f}s",
                                       try_number))
                time.sleep(wait)
                continue
            self.sensors.pop(shown, None)
            state = S.SKIPPED if outcome.get("state") == S.SKIPPED else S.SUCCESS
            self.report(TaskReport(shown, state, result.duration, outcome.get("reason") if state == S.SKIPPED
                                   else None, try_number))
            return state

    def _succeeded(self, task: Any, result: ForkResult, try_number: int) -> None:
        task_id = task.task_id
        values, outcome = split_outcome(result.values)
        if values:
            self.values.store((task_id, -1), values)
        ended = outcome.get("state")
        if ended == S.UP_FOR_RESCHEDULE:
            self._reschedule(task_id, outcome, result.duration, try_number)
            return
        if ended == S.SKIPPED:
            self._finish(task_id, S.SKIPPED, reason=outcome.get("reason"), duration=result.duration,
                         try_number=try_number)
            return
        self._finish(task_id, S.SUCCESS, duration=result.duration, try_number=try_number)
        why = f"short-circuited by {task_id!r}" if outcome.get("skip_descendants") else \
            f"not chosen by branch {task_id!r}"
        for skipped_id in sorted(unchosen_task_ids(self.dag, task_id, outcome)):
            if skipped_id in self.states and self.states[skipped_id] is None:
                self._finish(skipped_id, S.SKIPPED, reason=why)

    def _reschedule(self, task_id: str, outcome: Mapping[str, Any], duration: float, try_number: int) -> None:
        """A sensor in reschedule mode: poke again at its time, not charged to its retries."""
        due_at = _parse_time(outcome.get("reschedule_at"))
        wait = max(0.0, (due_at - datetime.now(timezone.utc)).total_seconds()) if due_at else 0.0
        sensor = self.sensors.setdefault(task_id, {SENSOR_FIRST_POKE_KEY: outcome.get("first_poke") or "",
                                                   SENSOR_POKES_KEY: "0"})
        sensor[SENSOR_POKES_KEY] = str(int(sensor[SENSOR_POKES_KEY]) + 1)
        self._wait(task_id, S.UP_FOR_RESCHEDULE, wait, duration=duration, try_number=try_number,
                   reason=f"next poke in {wait:.1f}s")

    def _failed(self, task: Any, result: ForkResult, try_number: int) -> None:
        task_id = task.task_id
        reason = result.reason or f"task process exited with code {result.exit_code}"
        self.sensors.pop(task_id, None)
        self.failures[task_id] += 1
        if NO_RETRY_MARK not in reason and self.failures[task_id] <= task.retries:
            delay = min(task.retry_delay_for(try_number), RETRY_DELAY_CAP_SECONDS)
            self._wait(task_id, S.UP_FOR_RETRY, delay, duration=result.duration, try_number=try_number,
                       reason=f"{reason}; retry {self.failures[task_id]} of {task.retries} in {delay:.1f}s")
            return
        self._finish(task_id, S.FAILED, reason=reason, duration=result.duration, try_number=try_number)

    def _wait(self, task_id: str, state: str, seconds: float, **report: Any) -> None:
        self.states[task_id] = state
        self.due[task_id] = time.monotonic() + seconds
        self.report(TaskReport(task_id, state, **report))


def _rule_reason(rule: str, upstream_states: Sequence[str | None]) -> str:
    """``trigger rule all_success; upstream: 1 failed, 1 success``."""
    counts = Counter(str(state) for state in upstream_states)
    return f"trigger rule {rule}; upstream: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _parse_time(text: str | None) -> datetime | None:
    try:
        return parse_logical_date(text) if text else None
    except ValueError:
        return None


# -- running a try -------------------------------------------------------------------------
def run_try_in_fork(command: Sequence[str], log_path: Path, *, console=None) -> ForkResult:
    """Run one task command in a fork of this process, copying its log file to ``console``
    (default ``sys.stderr``) while it runs. Ctrl-C stops the try's process group."""
    follower = LogFollower(log_path, console if console is not None else sys.stderr)
    forked = start_forked_command(command, die_with_parent=True)
    try:
        while True:
            result = forked.wait(LOG_COPY_INTERVAL_SECONDS)
            follower.copy_new()
            if result is not None:
                return result
    except BaseException:
        forked.stop(reason="the test run was interrupted")
        follower.copy_new()
        raise


class LogFollower:
    """Copies what a try appends to its log file to a console stream, from where it was at start.

    A log file is appended to (a second test run with the same logical date adds to it),
    so only the bytes written after this object was made are copied.
    """

    def __init__(self, path: Path, console):
        self.path = path
        self.console = console
        try:
            self.offset = os.path.getsize(path)
        except OSError:
            self.offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def copy_new(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:  # not created yet, or gone: nothing to copy
            return
        if not chunk:
            return
        self.offset += len(chunk)
        self.console.write(self._decoder.decode(chunk))
        self.console.flush()
