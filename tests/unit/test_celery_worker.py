"""The worker's task, run in this process with Celery's ``apply`` (no broker, no worker).

The result backend is the real serverless one (SQLite under CROSSDOCK_HOME), so claims
and outcomes are stored for real. Real worker processes are in tests/integration.
"""

from __future__ import annotations

import socket
import textwrap
import uuid

import pytest
from celery import states

from crossdock.configuration import conf
from crossdock.executors import celery_worker
from crossdock.executors.celery_app import EXECUTE_COMMAND_TASK, get_celery_app
from crossdock.executors.celery_claim import claim_task
from crossdock.runner.command import InvalidCommandError


@pytest.fixture(autouse=True)
def dags_folder_is_tmp_path(tmp_path, monkeypatch):
    """The DAG files these tests write live in tmp_path; workers run only DAG files in the DAGs folder."""
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(tmp_path))
    conf.reload()


@pytest.fixture
def dag_file(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    path = tmp_path / "worker_dag.py"
    path.write_text(textwrap.dedent(f"""
        import os
        from crossdock import DAG, PythonOperator

        def mark():
            with open(os.path.join({str(out)!r}, "ran"), "a") as handle:
                handle.write("x\\n")

        def boom():
            raise RuntimeError("it broke")

        with DAG("worker_dag") as dag:
            PythonOperator("mark", python_callable=mark)
            PythonOperator("boom", python_callable=boom)
    """))
    return path


def command(dag_file, task_id: str) -> list[str]:
    return ["crossdock", "tasks", "run", "worker_dag", task_id, "r1", "--try-number", "1",
            "--subdir", str(dag_file)]


def runs(dag_file) -> int:
    marker = dag_file.parent / "out" / "ran"
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def apply(cmd, task_id: str | None = None):
    app = get_celery_app()
    app.conf.task_store_eager_result = True  # store outcomes as a worker does
    task = app.tasks[EXECUTE_COMMAND_TASK]
    return task.apply(args=[cmd], task_id=task_id or str(uuid.uuid4()))


def test_a_task_command_runs_in_a_fork_and_succeeds(dag_file):
    result = apply(command(dag_file, "mark"))
    assert result.state == states.SUCCESS, result.traceback
    assert result.result["exit_code"] == 0
    assert runs(dag_file) == 1


def test_a_failing_command_names_host_celery_id_and_reason(dag_file):
    task_id = str(uuid.uuid4())
    result = apply(command(dag_file, "boom"), task_id)
    assert result.state == states.FAILURE
    message = str(result.result)
    assert socket.gethostname() in message  # apply() runs as this host; workers use their node name
    assert task_id in message
    assert "RuntimeError: it broke" in message


@pytest.mark.parametrize("bad", [
    ["touch", "should-not-exist"],
    "crossdock tasks run worker_dag mark r1",
    ["crossdock", "dags", "trigger", "x", "y", "z"],
])
def test_anything_but_a_task_command_is_refused_and_logged_without_running(bad, caplog, monkeypatch):
    ran = []
    monkeypatch.setattr(celery_worker, "_run", lambda cmd: ran.append(cmd))
    result = apply(bad)
    assert result.state == states.FAILURE
    assert isinstance(result.result, InvalidCommandError)
    assert "refusing to run" in str(result.result)
    assert ran == []
    assert any("refusing to run" in record.getMessage() for record in caplog.records
               if record.levelname == "ERROR")


def test_a_refused_command_is_recorded_as_a_failure_the_scheduler_can_show():
    task_id = str(uuid.uuid4())
    apply(["rm", "-rf", "/"], task_id)
    meta = get_celery_app().backend.get_task_meta(task_id)
    assert meta["status"] == states.FAILURE
    assert "refusing to run ['rm', '-rf', '/']" in str(meta["result"])


def test_claims_are_exclusive_and_tell_who_won():
    backend = get_celery_app().backend
    task_id = str(uuid.uuid4())
    first = claim_task(backend, task_id, meta={"hostname": "a@h", "pid": 1})
    second = claim_task(backend, task_id, meta={"hostname": "b@h", "pid": 2})
    assert first.won and not second.won
    assert second.state == states.STARTED
    assert second.meta == {"hostname": "a@h", "pid": 1}


@pytest.mark.parametrize("finished", [states.SUCCESS, states.FAILURE, states.REVOKED])
def test_a_redelivered_message_of_a_finished_try_is_dropped(dag_file, finished):
    task_id = str(uuid.uuid4())
    backend = get_celery_app().backend
    if finished == states.SUCCESS:
        backend.store_result(task_id, {"exit_code": 0}, states.SUCCESS)
    elif finished == states.FAILURE:
        backend.mark_as_failure(task_id, RuntimeError("first run failed"))
    else:
        backend.mark_as_revoked(task_id, "revoked")
    result = apply(command(dag_file, "mark"), task_id)
    assert result.state == states.IGNORED
    assert runs(dag_file) == 0
    assert backend.get_task_meta(task_id)["status"] == finished


def test_the_same_message_delivered_twice_runs_once(dag_file):
    task_id = str(uuid.uuid4())
    assert apply(command(dag_file, "mark"), task_id).state == states.SUCCESS
    assert apply(command(dag_file, "mark"), task_id).state == states.IGNORED
    assert runs(dag_file) == 1


def test_a_try_claimed_by_a_live_worker_is_left_to_it(dag_file, monkeypatch):
    task_id = str(uuid.uuid4())
    claim_task(get_celery_app().backend, task_id, meta={"hostname": "other@host", "pid": 99})
    monkeypatch.setattr(celery_worker, "_owner_still_running", lambda *a, **k: True)
    assert apply(command(dag_file, "mark"), task_id).state == states.IGNORED
    assert runs(dag_file) == 0
    assert get_celery_app().backend.get_task_meta(task_id)["status"] == states.STARTED


def test_a_try_claimed_by_a_vanished_worker_fails_instead_of_running_again(dag_file, monkeypatch):
    task_id = str(uuid.uuid4())
    claim_task(get_celery_app().backend, task_id, meta={"hostname": "dead@host", "pid": 99})
    monkeypatch.setattr(celery_worker, "_owner_still_running", lambda *a, **k: False)
    result = apply(command(dag_file, "mark"), task_id)
    assert result.state == states.FAILURE
    assert "dead@host" in str(result.result) and "not run a second time" in str(result.result)
    assert runs(dag_file) == 0


def test_a_worker_that_cannot_be_asked_is_presumed_alive(monkeypatch):
    class NoBroadcast:
        class control:
            @staticmethod
            def inspect(**kwargs):
                raise NotImplementedError("transport has no fanout")

    assert celery_worker._owner_still_running(NoBroadcast, "id", owner_host="w@h", owner_pid=1) is None


def test_embedded_workers_need_a_queue():
    with pytest.raises(ValueError, match="queue"):
        celery_worker.start_embedded_workers(queues=[], concurrency=1)
