"""No code from the broker, against a real worker on a real Redis broker.

An attacker here is anyone who can write to the broker: a plain Celery app that knows
nothing of crossdock but the task name and uses ``send_task``, as the issue's attack
did. The worker is a real ``crossdock celery worker`` process. Every evil DAG file
writes a marker file when imported; a refused message must leave no marker and a
FAILURE in the result backend whose reason says why.
"""

from __future__ import annotations

import os
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery, states

from crossdock.configuration import conf
from crossdock.executors.celery_app import EXECUTE_COMMAND_TASK
from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_worker import start_embedded_workers
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.state import TaskInstanceState as S
from service_gates import REDIS_URL, require_service
from executor_doubles import FakeTI
from process_helpers import killed_when_done

pytestmark = pytest.mark.redis

BROKER = f"{REDIS_URL}/0"
BACKEND = f"{REDIS_URL}/1"
#: Upper bound for waits on real processes; a test ends as soon as the awaited thing happens.
WAIT_LIMIT = 60.0


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A DAGs folder with one good DAG, evil files outside it, and a worker on its own queue."""
    require_service("redis")
    dags = tmp_path / "dags"
    dags.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (dags / "good.py").write_text(textwrap.dedent(f"""
        from crossdock import DAG, PythonOperator

        def mark():
            open({str(out / "good-ran")!r}, "a").write("ran\\n")

        with DAG("good") as dag:
            PythonOperator("mark", python_callable=mark)
    """))
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = outside / "evil.py"
    evil.write_text(f"open({str(out / 'evil-ran')!r}, 'a').write('imported\\n')\n")
    (dags / "innocent_looking.py").symlink_to(evil)
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(dags))
    monkeypatch.setenv("CROSSDOCK__CELERY__BROKER_URL", BROKER)
    monkeypatch.setenv("CROSSDOCK__CELERY__RESULT_BACKEND", BACKEND)
    conf.reload()
    return dags, evil, out


def attacker_app() -> Celery:
    """A Celery client with broker access and nothing else: no crossdock task, no key."""
    app = Celery("attacker", broker=BROKER, backend=BACKEND, set_as_current=False)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    return app


def command(subdir: str, dag_id: str = "x", task_id: str = "y") -> list[str]:
    return ["crossdock", "tasks", "run", dag_id, task_id, "z", "--try-number", "1", "--subdir", subdir]


def outcome(app: Celery, task_id: str):
    """The final state and result of a task, read from the result backend."""
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        meta = app.backend.get_task_meta(task_id)
        if meta["status"] in states.READY_STATES:
            return meta["status"], str(meta["result"])
        time.sleep(0.05)
    raise AssertionError(f"celery task {task_id} has no outcome after {WAIT_LIMIT:.0f}s")


def wait_for_file(path: Path) -> str:
    deadline = time.monotonic() + WAIT_LIMIT
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def start_worker(queue: str, **env: str):
    """A worker on ``queue`` for a ``with`` block, killed when the block ends (its tries are over)."""
    return killed_when_done(start_embedded_workers(queues=[queue], concurrency=1,
                                                   hostname_prefix=f"policy-{queue[-6:]}-", env=env or None))


def test_a_worker_refuses_every_dag_file_outside_its_folder(setup):
    dags, evil, out = setup
    queue = f"policy-{uuid.uuid4().hex[:10]}"
    evil_commands = {
        "absolute outside": command(str(evil)),
        "traversal from DAGS_FOLDER": command("DAGS_FOLDER/../outside/evil.py"),
        "relative traversal": command(os.path.relpath(evil, os.getcwd())),  # the worker's cwd is ours
        "symlink inside pointing outside": command("DAGS_FOLDER/innocent_looking.py"),
        "--subdir= form": command(str(evil))[:-2] + [f"--subdir={evil}"],
    }
    app = attacker_app()
    with start_worker(queue):
        sent = {name: app.send_task(EXECUTE_COMMAND_TASK, args=[cmd], queue=queue).id
                for name, cmd in evil_commands.items()}
        for name, task_id in sent.items():
            state, reason = outcome(app, task_id)
            assert state == states.FAILURE, name
            assert "refusing to run" in reason and "outside the DAGs folder" in reason, (name, reason)
        # The worker is still healthy and runs what is inside its folder.
        good = app.send_task(EXECUTE_COMMAND_TASK, args=[command("DAGS_FOLDER/good.py", "good", "mark")],
                             queue=queue)
        assert wait_for_file(out / "good-ran") == "ran\n"
        outcome(app, good.id)
    assert not (out / "evil-ran").exists()


def test_with_signing_on_an_unsigned_allowed_looking_command_is_refused(setup, monkeypatch, capfd):
    _dags, _evil, out = setup
    key = "never-log-me-" + uuid.uuid4().hex
    queue = f"signed-{uuid.uuid4().hex[:10]}"
    good = command("DAGS_FOLDER/good.py", "good", "mark")
    app = attacker_app()
    with start_worker(queue, CROSSDOCK__CELERY__TASK_SIGNING_KEY=key):
        unsigned = app.send_task(EXECUTE_COMMAND_TASK, args=[good], queue=queue)
        forged = app.send_task(EXECUTE_COMMAND_TASK, args=[good], kwargs={"signature": "hmac-sha256:" + "ab" * 32},
                               queue=queue)
        state, reason = outcome(app, unsigned.id)
        assert state == states.FAILURE and "unsigned task message" in reason, reason
        state, reason = outcome(app, forged.id)
        assert state == states.FAILURE and "signature does not match" in reason, reason
        assert not (out / "good-ran").exists()

        # The executor, holding the same key, signs what it publishes: that one runs.
        monkeypatch.setenv("CROSSDOCK__CELERY__TASK_SIGNING_KEY", key)
        conf.reload()
        executor = CeleryExecutor()
        executor.start()
        ti_key = TaskInstanceKey("good", "mark", "z", 1)
        executor.queue_command(FakeTI(ti_key), good, queue=queue)
        assert run_until_final(executor, ti_key)[0] == S.SUCCESS
    assert (out / "good-ran").read_text() == "ran\n"
    # The worker logged each refusal (to its stderr, which is this test's) and never the key.
    worker_log = capfd.readouterr().err
    assert worker_log.count("unsigned task message") >= 1
    assert "signature does not match" in worker_log
    assert key not in worker_log


def run_until_final(executor: CeleryExecutor, key) -> tuple:
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        executor.heartbeat()
        event = executor.get_event_buffer().get(key)
        if event and event[0] in (S.SUCCESS, S.FAILED):
            return event
        time.sleep(0.05)
    raise AssertionError(f"no outcome for {key}")


def test_a_try_the_worker_refuses_reaches_the_executor_as_a_failure_with_the_reason(setup, tmp_path):
    """The scheduler's DAGs folder is not the worker's: the worker checks against its own."""
    dags, _evil, out = setup
    elsewhere = tmp_path / "worker-dags"
    elsewhere.mkdir()
    queue = f"own-{uuid.uuid4().hex[:10]}"
    with start_worker(queue, CROSSDOCK__CORE__DAGS_FOLDER=str(elsewhere)):
        executor = CeleryExecutor()
        executor.start()
        key = TaskInstanceKey("good", "mark", "z", 1)
        executor.queue_command(FakeTI(key), command(str(dags / "good.py"), "good", "mark"), queue=queue)
        state, reason = run_until_final(executor, key)
    assert state == S.FAILED
    assert "refusing to run" in reason and f"outside the DAGs folder {elsewhere}" in reason, reason
    assert not (out / "good-ran").exists()
