"""BaseExecutor: the contract the scheduler and the seed documents rely on."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from crossdock.executors.base_executor import BaseExecutor
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import InvalidCommandError
from crossdock.state import TaskInstanceState as S


@dataclass
class FakeTI:
    """The attributes of a task instance an executor reads (plain data, no database)."""

    task_id: str
    priority_weight: int = 1
    queue: str = "default"
    try_number: int = 1
    executor_config: dict | None = None
    dag_id: str = "dag"
    run_id: str = "run"
    map_index: int = -1

    @property
    def key(self):
        return TaskInstanceKey(self.dag_id, self.task_id, self.run_id, self.try_number, self.map_index)


class RecordingExecutor(BaseExecutor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.executed = []

    def execute_async(self, key, command, queue=None, executor_config=None):
        self.executed.append((key.task_id, queue))

    def sync(self):
        pass


def test_compatibility_attributes_have_airflow_defaults():
    assert BaseExecutor.supports_ad_hoc_ti_run is False
    assert BaseExecutor.supports_pickling is True
    assert BaseExecutor.supports_sentry is False
    assert BaseExecutor.is_local is False
    assert BaseExecutor.is_single_threaded is False
    assert BaseExecutor.is_production is True
    assert BaseExecutor.change_sensor_mode_to_reschedule is False
    assert BaseExecutor.serve_logs is False
    assert BaseExecutor.callback_sink is None
    assert BaseExecutor().parallelism == 32


def test_queue_command_ignores_a_key_already_queued():
    executor = RecordingExecutor()
    ti = FakeTI("a")
    executor.queue_command(ti, ["crossdock", "tasks", "run", "dag", "a", "run"], priority=1, queue="q1")
    executor.queue_command(ti, ["other"], priority=9, queue="q2")
    assert executor.queued_tasks[ti.key][0] == ["crossdock", "tasks", "run", "dag", "a", "run"]
    assert executor.has_task(ti)


def test_queue_task_instance_builds_the_task_command_at_its_priority_and_queue():
    executor = RecordingExecutor()
    ti = FakeTI("a", priority_weight=7, queue="high", try_number=2)
    executor.queue_task_instance(ti)
    command, priority, queue, queued_ti = executor.queued_tasks[ti.key]
    assert command == ["crossdock", "tasks", "run", "dag", "a", "run", "--try-number", "2"]
    assert (priority, queue, queued_ti) == (7, "high", ti)


def test_heartbeat_triggers_by_priority_within_open_slots_stable_for_ties():
    executor = RecordingExecutor(parallelism=3)
    for name, weight in [("low", 1), ("tie1", 5), ("high", 9), ("tie2", 5)]:
        executor.queue_command(FakeTI(name), ["crossdock", "tasks", "run", "d", name, "r"], priority=weight)
    executor.heartbeat()
    assert [t for t, _ in executor.executed] == ["high", "tie1", "tie2"]
    assert len(executor.running) == 3 and len(executor.queued_tasks) == 1
    assert executor.slots_available == -1  # queued tasks count against capacity too
    assert executor.slots_occupied == 4


def test_parallelism_zero_means_unlimited():
    executor = RecordingExecutor(parallelism=0)
    for i in range(50):
        executor.queue_command(FakeTI(f"t{i}"), ["crossdock", "tasks", "run", "d", f"t{i}", "r"])
    executor.heartbeat()
    assert len(executor.executed) == 50
    import sys

    assert executor.slots_available == sys.maxsize


def test_change_state_fills_the_event_buffer_and_leaves_running():
    executor = RecordingExecutor()
    key = FakeTI("a").key
    executor.running.add(key)
    executor.running_state(key, "host")
    assert key in executor.running
    executor.fail(key, "boom")
    assert key not in executor.running
    assert executor.event_buffer[key] == (S.FAILED, "boom")


def test_get_event_buffer_pops_only_the_listed_dags():
    executor = RecordingExecutor()
    a, b = FakeTI("a", dag_id="one").key, FakeTI("b", dag_id="two").key
    executor.success(a)
    executor.success(b)
    assert executor.get_event_buffer(["one"]) == {a: (S.SUCCESS, None)}
    assert executor.get_event_buffer() == {b: (S.SUCCESS, None)}
    assert executor.get_event_buffer() == {}


def test_send_callback_without_a_sink_is_refused():
    with pytest.raises(ValueError, match="Callback sink is not ready."):
        RecordingExecutor().send_callback(object())


def test_default_adoption_adopts_nothing_and_log_is_empty():
    tis = [FakeTI("a")]
    executor = RecordingExecutor()
    assert executor.try_adopt_task_instances(tis) == tis
    assert executor.get_task_log(tis[0], 1) == ([], [])
    assert executor.get_cli_commands() == []


@pytest.mark.parametrize("command", [
    ["bash", "-c", "rm -rf /"],
    "crossdock tasks run d t r",
    ["crossdock", "tasks", "run"],
    ["crossdock", "dags", "trigger", "x", "y", "z"],
    ["crossdock", "tasks", "run", "d", "t", 5],
])
def test_validate_command_refuses_anything_but_a_task_run(command):
    with pytest.raises(InvalidCommandError, match="refusing to run"):
        BaseExecutor.validate_command(command)


def test_job_id_is_settable():
    executor = RecordingExecutor()
    executor.job_id = 42
    assert executor.job_id == 42


def test_the_errors_executors_raise_on_purpose_hang_from_the_crossdock_root():
    from crossdock.exceptions import CrossdockError, UserFacingError
    from crossdock.executors.celery_claim_keeper import ClaimTakenOver
    from crossdock.executors.celery_protocol import CommandFailedError, TaskLostError
    from crossdock.executors.task_signing import SignatureError

    for error in (ClaimTakenOver, CommandFailedError, TaskLostError):
        assert issubclass(error, CrossdockError) and not issubclass(error, UserFacingError), error
    for error in (InvalidCommandError, SignatureError):  # a refusal is a reason a user reads
        assert issubclass(error, UserFacingError) and issubclass(error, ValueError), error


def test_queue_task_instance_passes_the_logical_date_the_instance_already_holds():
    from datetime import datetime, timezone

    from crossdock.runner.command import parse_task_command

    date = datetime(2024, 3, 4, 5, 6, 7, tzinfo=timezone.utc)

    @dataclass
    class Run:
        logical_date: datetime

    @dataclass
    class WithRun(FakeTI):
        dag_run: Run | None = None

    @dataclass
    class WithDate(FakeTI):
        logical_date: datetime | None = None

    executor = RecordingExecutor()
    for ti in (WithRun("a", dag_run=Run(date)), WithDate("b", logical_date=date)):
        executor.queue_task_instance(ti)
        command = executor.queued_tasks[ti.key][0]
        assert command[-2:] == ["--logical-date", "2024-03-04T05:06:07+00:00"]
        assert parse_task_command(command).logical_date == date


class PolicyExecutor(RecordingExecutor):
    """Applies the command policy when it sends, as every crossdock executor does."""

    def execute_async(self, key, command, queue=None, executor_config=None):
        if not self.refuse_command(key, command):
            super().execute_async(key, command, queue, executor_config)


def test_a_command_refused_at_send_time_fails_with_the_refusal_and_frees_its_slot():
    executor = PolicyExecutor(parallelism=1)
    evil, ok = FakeTI("evil"), FakeTI("ok")
    executor.queue_command(evil, ["bash", "-c", "rm -rf /"], priority=9)
    executor.queue_command(ok, ["crossdock", "tasks", "run", "dag", "ok", "run"])
    executor.heartbeat()
    state, reason = executor.get_event_buffer()[evil.key]
    assert state == S.FAILED and reason.startswith("refusing to run ['bash', '-c', 'rm -rf /']")
    assert executor.running == set() and executor.slots_available == 0  # only "ok" waits
    executor.heartbeat()
    assert executor.executed == [("ok", None)] and executor.running == {ok.key}


def test_queued_takes_the_key_out_of_running_as_airflows_does():
    executor = RecordingExecutor()
    key = FakeTI("a").key
    executor.running.add(key)
    executor.queued(key, "external-id")
    assert key not in executor.running
    assert executor.get_event_buffer() == {key: (S.QUEUED, "external-id")}


def _still_running_setup():
    from collections import defaultdict

    from crossdock.executors.still_running import PATIENCE_SECONDS, StillRunningAttempts

    now = [0.0]
    executor = RecordingExecutor()
    executor.attempts = defaultdict(lambda: StillRunningAttempts(clock=lambda: now[0]))
    ti = FakeTI("again")
    executor.running.add(ti.key)
    executor.queue_command(ti, ["crossdock", "tasks", "run", "dag", "again", "run"])
    return executor, ti, now, PATIENCE_SECONDS


def test_a_try_queued_while_its_key_still_runs_is_held_back_then_dropped():
    executor, ti, now, patience = _still_running_setup()
    for moment in (0.0, patience / 2, patience + 1):  # held back while within the patience, and once after
        now[0] = moment
        executor.heartbeat()
        assert ti.key in executor.queued_tasks and executor.executed == []
    executor.heartbeat()
    assert ti.key not in executor.queued_tasks and ti.key not in executor.attempts
    assert executor.executed == [] and executor.get_event_buffer() == {}  # the running copy reports
    assert ti.key in executor.running


def test_a_try_held_back_is_sent_once_its_key_stops_running():
    executor, ti, now, _patience = _still_running_setup()
    executor.heartbeat()
    executor.success(ti.key)
    executor.heartbeat()
    assert executor.executed == [("again", None)] and ti.key not in executor.attempts


@pytest.mark.parametrize("command, ids", [
    (["crossdock", "tasks", "run", "my_dag", "my_task", "run1", "--try-number", "2"], ("my_dag", "my_task")),
    (["crossdock", "tasks", "run", "d", "t", "r", "--subdir", "DAGS_FOLDER/x.py", "--map-index", "3"], ("d", "t")),
    (["crossdock", "tasks", "run"], (None, None)),
])
def test_validate_crossdock_tasks_run_command_returns_the_dag_and_task_ids(command, ids):
    assert BaseExecutor.validate_crossdock_tasks_run_command(command) == ids


@pytest.mark.parametrize("command", [
    ["airflow", "tasks", "run", "d", "t", "r"],
    ["crossdock", "dags", "list"],
    ["crossdock", "tasks", "run", "d", "t"],
    ["crossdock", "tasks", "run", "d", "t", "r", "--no-such-option", "1"],
])
def test_validate_crossdock_tasks_run_command_refuses_what_is_not_a_try(command):
    with pytest.raises(ValueError):
        BaseExecutor.validate_crossdock_tasks_run_command(command)
