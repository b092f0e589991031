"""CeleryExecutor on the serverless broker (filesystem) and result backend (SQLite).

No worker runs here: messages are read back from the real broker to see what was sent,
and outcomes are written into the real result backend the way a worker writes them.
Workers, Redis, RabbitMQ and PostgreSQL are exercised in tests/integration.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field

import pytest
from celery import states
from celery.signals import before_task_publish
from kombu import Connection
from sqlalchemy import event
from sqlalchemy.engine import Engine

from crossdock.configuration import conf
from crossdock.executors.celery_app import get_celery_app
from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_state_fetcher import TaskState
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import task_run_command
from crossdock.state import TaskInstanceState as S


@dataclass
class FakeTI:
    """The fields of a task instance an executor reads (no database needed)."""

    key: TaskInstanceKey
    external_executor_id: str | None = None
    executor_config: dict | None = None
    queue: str = "default"
    priority_weight: int = 1
    extra: dict = field(default_factory=dict)


def key(task_id: str, try_number: int = 1) -> TaskInstanceKey:
    return TaskInstanceKey("celery_dag", task_id, "run1", try_number)


def queue(executor: CeleryExecutor, task_id: str, *, priority: int = 1, queue_name: str = "default",
          try_number: int = 1) -> TaskInstanceKey:
    k = key(task_id, try_number)
    executor.queue_command(FakeTI(k), task_run_command(k, subdir="DAGS_FOLDER/celery_dag.py"),
                           priority=priority, queue=queue_name)
    return k


def sent_messages(queue_name: str = "default") -> list[tuple[str, list]]:
    """(celery task id, command) of every message waiting in the broker queue, in order."""
    app = get_celery_app()
    found = []
    with Connection(app.conf.broker_url, transport_options=app.conf.broker_transport_options) as conn:
        simple = conn.SimpleQueue(queue_name, no_ack=True)
        try:
            while True:
                try:
                    message = simple.get(block=False)
                except simple.Empty:
                    break
                args = message.decode()[0]
                found.append((message.headers["id"], args[0]))
        finally:
            simple.close()
    return found


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def executor():
    ex = CeleryExecutor(parallelism=10)
    ex.start()
    return ex


def store(task_id: str, state: str, result=None) -> None:
    """Write an outcome into the result backend as a worker would."""
    get_celery_app().backend.store_result(task_id, result, state)


def test_sends_in_priority_order_and_only_as_many_as_open_slots(executor):
    low = queue(executor, "low", priority=1)
    high = queue(executor, "high", priority=10)
    mid = queue(executor, "mid", priority=5)
    published = []

    def record(headers=None, body=None, **_):
        published.append(body[0][0][4])

    before_task_publish.connect(record, weak=False)
    try:
        executor.trigger_tasks(open_slots=2)
    finally:
        before_task_publish.disconnect(record)
    assert published == ["high", "mid"]
    assert sorted(command[4] for _id, command in sent_messages()) == ["high", "mid"]
    assert list(executor.queued_tasks) == [low]
    assert executor.running == {high, mid}


def test_the_celery_id_is_reported_as_queued_info_and_is_the_message_id(executor):
    k = queue(executor, "one")
    executor.heartbeat()
    state, info = executor.get_event_buffer()[k]
    assert state == S.QUEUED
    uuid.UUID(info)
    [(message_id, command)] = sent_messages()
    assert message_id == info == executor.tasks[k]
    assert command[:3] == ["crossdock", "tasks", "run"]


def test_the_queue_of_the_task_is_the_celery_queue(executor):
    queue(executor, "gpu_task", queue_name="gpu")
    executor.heartbeat()
    assert sent_messages("default") == []
    assert [command[4] for _id, command in sent_messages("gpu")] == ["gpu_task"]


def test_a_command_that_is_not_a_task_command_fails_without_being_sent(executor):
    k = key("evil")
    executor.queue_command(FakeTI(k), ["bash", "-c", "rm -rf /"], queue="default")
    executor.heartbeat()
    state, info = executor.get_event_buffer()[k]
    assert state == S.FAILED
    assert "refusing to run" in info
    assert sent_messages() == []
    assert not executor.queued_tasks and not executor.running


@pytest.fixture
def broker_down(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CELERY__BROKER_URL", f"redis://127.0.0.1:{closed_port()}/0")
    monkeypatch.setenv("CROSSDOCK__CELERY__OPERATION_TIMEOUT", "0.5")
    monkeypatch.setenv("CROSSDOCK__CELERY__TASK_PUBLISH_MAX_RETRIES", "2")
    conf.reload()


def test_publish_retries_keep_the_task_queued_then_fail_with_the_reason(broker_down):
    executor = CeleryExecutor()
    k = queue(executor, "unlucky")
    executor.heartbeat()
    assert k in executor.queued_tasks and k not in executor.running
    first_state, celery_id = executor.get_event_buffer()[k]
    assert first_state == S.QUEUED
    executor.heartbeat()
    assert k in executor.queued_tasks
    assert executor.get_event_buffer() == {}
    executor.heartbeat()
    state, reason = executor.get_event_buffer()[k]
    assert state == S.FAILED
    assert reason.startswith("could not publish to the broker after 3 tries: ")
    assert "onnect" in reason  # the broker's own words (connection refused)
    assert not executor.queued_tasks and not executor.running and not executor.tasks


def test_one_broker_failure_counts_a_try_for_the_whole_batch_without_more_waiting(broker_down):
    executor = CeleryExecutor()
    keys = [queue(executor, f"t{i}") for i in range(5)]
    executor.heartbeat()
    assert executor.task_publish_retries == {k: 1 for k in keys}
    assert set(executor.queued_tasks) == set(keys)


def test_the_celery_id_stays_the_same_across_publish_retries(broker_down, monkeypatch):
    executor = CeleryExecutor()
    k = queue(executor, "retried")
    executor.heartbeat()
    _state, first_id = executor.get_event_buffer()[k]
    monkeypatch.delenv("CROSSDOCK__CELERY__BROKER_URL")
    conf.reload()
    executor._app = None  # the scheduler's next app sees the broker again
    executor.heartbeat()
    assert executor.tasks[k] == first_id
    assert [message_id for message_id, _ in sent_messages()] == [first_id]


@pytest.mark.parametrize("celery_state, result, expected", [
    (states.SUCCESS, {"exit_code": 0}, S.SUCCESS),
    (states.FAILURE, RuntimeError("task command failed on w1@host (celery task id X): boom"), S.FAILED),
    (states.REVOKED, None, S.FAILED),
])
def test_final_celery_states_become_final_events(executor, celery_state, result, expected):
    k = queue(executor, "t")
    executor.heartbeat()
    executor.get_event_buffer()
    if celery_state == states.FAILURE:
        get_celery_app().backend.mark_as_failure(executor.tasks[k], result)
    elif celery_state == states.REVOKED:
        get_celery_app().backend.mark_as_revoked(executor.tasks[k], "stop")
    else:
        store(executor.tasks[k], celery_state, result)
    executor.sync()
    state, info = executor.get_event_buffer()[k]
    assert state == expected
    assert k not in executor.running and k not in executor.tasks
    if celery_state == states.FAILURE:
        assert "task command failed on w1@host (celery task id X): boom" in info
    if celery_state == states.REVOKED:
        assert "revoked" in info.lower()


def test_started_is_reported_running_once_with_the_worker_host(executor):
    k = queue(executor, "t")
    executor.heartbeat()
    executor.get_event_buffer()
    store(executor.tasks[k], states.STARTED, {"hostname": "w1@box", "pid": 321})
    executor.sync()
    assert executor.get_event_buffer() == {k: (S.RUNNING, {"hostname": "w1@box", "pid": 321})}
    executor.sync()
    assert executor.get_event_buffer() == {}
    assert k in executor.running


def test_running_never_hides_the_unread_queued_event_with_the_external_id(executor):
    k = queue(executor, "fast")
    executor.trigger_tasks(open_slots=1)
    store(executor.tasks[k], states.STARTED, {"hostname": "w1@box", "pid": 1})
    executor.sync()
    state, info = executor.get_event_buffer()[k]
    assert (state, info) == (S.QUEUED, executor.tasks[k])
    executor.sync()
    assert executor.get_event_buffer()[k][0] == S.RUNNING


@pytest.mark.parametrize("celery_state", [states.PENDING, states.RECEIVED, states.RETRY])
def test_non_final_states_change_nothing(executor, celery_state):
    k = queue(executor, "t")
    executor.heartbeat()
    executor.get_event_buffer()
    executor.update_task_state(k, TaskState(celery_state))
    assert executor.get_event_buffer() == {}
    assert k in executor.running and k in executor.tasks


def test_sync_reads_every_state_with_one_query(executor):
    executor.parallelism = 0
    keys = [queue(executor, f"t{i}") for i in range(40)]
    executor.heartbeat()
    executor.get_event_buffer()
    for k in keys[:10]:
        store(executor.tasks[k], states.SUCCESS)
    statements = []

    def count(conn, cursor, statement, *args):
        if "celery_taskmeta" in statement:
            statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        executor.sync()
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")
    events = executor.get_event_buffer()
    assert {k for k, (state, _) in events.items() if state == S.SUCCESS} == set(keys[:10])
    assert len(executor.running) == 30


def test_a_result_backend_outage_during_sync_keeps_tasks_tracked(monkeypatch, executor):
    k = queue(executor, "t")
    executor.heartbeat()

    def broken(*args, **kwargs):
        raise ConnectionError("backend gone")

    monkeypatch.setattr("crossdock.executors.celery_executor.fetch_states", broken)
    executor.sync()
    assert k in executor.running and k in executor.tasks


def test_adopts_task_instances_with_an_external_id_and_returns_the_rest(executor):
    celery_id = str(uuid.uuid4())
    with_id = FakeTI(key("adoptable"), external_executor_id=celery_id)
    without_id = FakeTI(key("orphan"))
    assert executor.try_adopt_task_instances([with_id, without_id]) == [without_id]
    assert executor.running == {with_id.key}
    assert executor.tasks == {with_id.key: celery_id}
    store(celery_id, states.SUCCESS)
    executor.sync()
    assert executor.get_event_buffer() == {with_id.key: (S.SUCCESS, None)}


def test_revoking_a_queued_task_claims_its_id_so_no_worker_can_start_it(executor):
    k = queue(executor, "stuck")
    executor.heartbeat()
    celery_id = executor.tasks[k]
    lines = executor.cleanup_stuck_queued_tasks([FakeTI(k, external_executor_id=celery_id)])
    assert len(lines) == 1 and celery_id in lines[0] and "revoked" in lines[0]
    assert get_celery_app().backend.get_task_meta(celery_id)["status"] == states.REVOKED
    assert k not in executor.running and k not in executor.tasks


def test_revoke_forgets_a_task_that_was_still_waiting_to_be_sent(broker_down):
    executor = CeleryExecutor()
    k = queue(executor, "waiting")
    executor.heartbeat()
    executor.revoke_task(ti=FakeTI(k))
    assert not executor.queued_tasks and not executor.running and not executor.task_publish_retries


def test_end_synchronous_waits_for_every_outcome(executor, monkeypatch):
    k = queue(executor, "t")
    executor.heartbeat()
    celery_id = executor.tasks[k]
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) == 3:
            store(celery_id, states.SUCCESS)

    monkeypatch.setattr("crossdock.executors.celery_executor.time.sleep", sleep)
    executor.end(synchronous=True)
    assert len(calls) == 3
    assert executor.get_event_buffer()[k][0] == S.SUCCESS


def test_task_log_comes_from_the_shared_log_folder(executor):
    from crossdock.runner.task_log import task_log_path_for_key

    k = key("logged", 2)
    path = task_log_path_for_key(k)
    path.parent.mkdir(parents=True)
    path.write_text("line one\nline two\n")
    sources, lines = executor.get_task_log(FakeTI(k.with_try_number(3)), 2)
    assert lines == ["line one", "line two"]
    assert str(path) in sources[0]
    sources, lines = executor.get_task_log(FakeTI(k), 7)
    assert lines == [] and "no log file" in sources[0]


def test_contract_flags_and_cli_group():
    assert CeleryExecutor.is_production and CeleryExecutor.supports_ad_hoc_ti_run
    assert CeleryExecutor.supports_sentry
    [group] = CeleryExecutor.get_cli_commands()
    assert group.name == "celery"
    assert {command.name for command in group.subcommands} == {
        "worker", "flower", "stop", "list-workers", "shutdown-worker", "shutdown-all-workers",
        "add-queue", "remove-queue", "autoscaler"}


def test_a_running_task_whose_worker_misses_two_pings_fails_and_is_marked_failed(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CELERY__WORKER_LOST_CHECK_INTERVAL", "0.01")
    monkeypatch.setenv("CROSSDOCK__CELERY__OPERATION_TIMEOUT", "0.2")
    conf.reload()
    executor = CeleryExecutor()
    k = queue(executor, "orphaned")
    executor.heartbeat()
    executor.get_event_buffer()
    celery_id = executor.tasks[k]
    store(celery_id, states.STARTED, {"hostname": "gone@nowhere", "pid": 1})
    executor._last_worker_check = 0.0
    executor.sync()  # first missed ping: still running
    assert k in executor.running
    assert executor.get_event_buffer()[k][0] == S.RUNNING
    executor._last_worker_check = 0.0
    executor.sync()  # second missed ping: given up
    state, reason = executor.get_event_buffer()[k]
    assert state == S.FAILED
    assert "gone@nowhere stopped answering" in reason
    assert get_celery_app().backend.get_task_meta(celery_id)["status"] == states.FAILURE
    assert k not in executor.running and k not in executor.tasks


def test_the_lost_worker_check_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CELERY__WORKER_LOST_CHECK_INTERVAL", "0")
    conf.reload()
    executor = CeleryExecutor()
    k = queue(executor, "long")
    executor.heartbeat()
    store(executor.tasks[k], states.STARTED, {"hostname": "gone@nowhere", "pid": 1})
    for _ in range(3):
        executor._last_worker_check = 0.0
        executor.sync()
    assert k in executor.running


@pytest.mark.parametrize("recorded, lost", [
    ("task_lost", True),
    ("pool_process_lost", True),
    ("command_failed", False),
    ("names_a_lost_worker_in_its_text", False),
])
def test_a_lost_try_is_told_by_the_type_of_its_recorded_failure_not_by_its_text(executor, recorded, lost):
    from billiard.exceptions import WorkerLostError

    from crossdock.executors.celery_protocol import CommandFailedError, TaskLostError
    from crossdock.executors.infrastructure_loss import is_infrastructure_loss

    error = {"task_lost": TaskLostError("worker w1@box (pid 7) stopped while running this try"),
             "pool_process_lost": WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL)."),
             "command_failed": CommandFailedError("task command failed on w1@box: boom"),
             "names_a_lost_worker_in_its_text": RuntimeError("TaskLostError WorkerLostError")}[recorded]
    k = queue(executor, "t")
    executor.heartbeat()
    executor.get_event_buffer()
    get_celery_app().backend.mark_as_failure(executor.tasks[k], error)
    executor.sync()
    state, reason = executor.get_event_buffer()[k]
    assert state == S.FAILED and str(error) in reason
    assert is_infrastructure_loss(reason) is lost
