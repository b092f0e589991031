"""Signed task messages: with ``[celery] task_signing_key`` a worker runs only what the executor signed.

The worker's task runs here through Celery's ``apply`` with the real serverless result
backend; ``_run`` (the fork that would run the try) is replaced by a recorder so these
tests see exactly whether a message got past the checks. Real workers on a real broker
are in tests/integration/test_worker_command_policy.py.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from celery import states

from crossdock.configuration import conf
from crossdock.executors import celery_worker
from crossdock.executors.celery_app import EXECUTE_COMMAND_TASK, get_celery_app
from crossdock.executors.task_signing import (
    SIGNATURE_KWARG, SignatureError, sign, signature_kwargs, verify,
)
from crossdock.runner.fork import ForkResult

KEY = "k3y-for-tests-only-0123456789"


@pytest.fixture
def signing_on(dags_folder, monkeypatch):
    (dags_folder / "good.py").write_text("from crossdock import DAG\ndag = DAG('good')\n")
    monkeypatch.setenv("CROSSDOCK__CELERY__TASK_SIGNING_KEY", KEY)
    conf.reload()
    return dags_folder


def good_command() -> list[str]:
    return ["crossdock", "tasks", "run", "good", "t", "r1", "--try-number", "1", "--subdir", "DAGS_FOLDER/good.py"]


@pytest.fixture
def ran(monkeypatch):
    """What got past the checks (the try itself is not run)."""
    calls = []

    def record(command, *, key):
        calls.append(command)
        return ForkResult(exit_code=0, reason=None, duration=0.0)

    monkeypatch.setattr(celery_worker, "_run", record)
    return calls


def apply(command, task_id: str, **kwargs):
    app = get_celery_app()
    app.conf.task_store_eager_result = True
    return app.tasks[EXECUTE_COMMAND_TASK].apply(args=[command], kwargs=kwargs, task_id=task_id)


def test_a_signature_binds_the_task_id_and_the_command():
    command = good_command()
    signature = sign("id-1", command, KEY.encode())
    assert signature.startswith("hmac-sha256:")
    assert signature == sign("id-1", list(command), KEY.encode())
    assert signature != sign("id-2", command, KEY.encode())  # no replay under a fresh id
    assert signature != sign("id-1", command[:-1] + ["DAGS_FOLDER/other.py"], KEY.encode())
    assert signature != sign("id-1", command, b"another key")


def test_with_no_key_nothing_is_signed_and_nothing_is_required(dags_folder):
    assert signature_kwargs("id", good_command()) == {}
    verify("id", good_command(), None)


def test_the_executor_side_signs_and_the_worker_side_accepts(signing_on):
    kwargs = signature_kwargs("id-9", good_command())
    assert set(kwargs) == {SIGNATURE_KWARG}
    verify("id-9", good_command(), kwargs[SIGNATURE_KWARG])


@pytest.mark.parametrize("signature, reason", [
    (None, "unsigned"),
    ("", "unsigned"),
    ("hmac-sha256:" + "0" * 64, "does not match"),
    (42, "malformed"),
])
def test_a_worker_with_a_key_refuses_unsigned_or_badly_signed_messages(signing_on, ran, caplog, signature,
                                                                       reason):
    task_id = str(uuid.uuid4())
    kwargs = {} if signature is None else {SIGNATURE_KWARG: signature}
    with caplog.at_level(logging.ERROR, logger="crossdock.executors.celery_worker"):
        result = apply(good_command(), task_id, **kwargs)
    assert result.state == states.FAILURE
    assert isinstance(result.result, SignatureError)
    assert reason in str(result.result)
    assert ran == []
    meta = get_celery_app().backend.get_task_meta(task_id)
    assert meta["status"] == states.FAILURE and reason in str(meta["result"])
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert reason in logged and task_id in logged
    assert KEY not in logged  # the key is a secret: never in a log line


def test_a_signature_for_another_task_id_or_command_is_refused(signing_on, ran):
    other_id = str(uuid.uuid4())
    stolen = sign(other_id, good_command(), KEY.encode())
    assert isinstance(apply(good_command(), str(uuid.uuid4()), signature=stolen).result, SignatureError)
    changed = good_command()[:-2]  # same signature, a command that searches the whole folder
    assert isinstance(apply(changed, other_id, signature=stolen).result, SignatureError)
    assert ran == []


def test_a_correctly_signed_message_gets_past_the_checks(signing_on, ran):
    task_id = str(uuid.uuid4())
    apply(good_command(), task_id, **signature_kwargs(task_id, good_command()))
    assert ran == [good_command()]


def test_signing_does_not_replace_the_dag_file_check(signing_on, ran, tmp_path):
    """A signed command naming a file outside the DAGs folder is still refused."""
    evil = tmp_path / "evil.py"
    evil.write_text("raise SystemExit('imported')\n")
    command = good_command()[:-1] + [str(evil)]
    task_id = str(uuid.uuid4())
    result = apply(command, task_id, **signature_kwargs(task_id, command))
    assert result.state == states.FAILURE and "outside the DAGs folder" in str(result.result)
    assert ran == []


def test_the_celery_executor_publishes_signed_messages(signing_on, monkeypatch):
    """What the executor hands to Celery carries a signature the worker accepts."""
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.models.taskinstancekey import TaskInstanceKey

    executor = CeleryExecutor()
    published = []
    task = executor.app.tasks[EXECUTE_COMMAND_TASK]
    # Only the hand-over to the broker is recorded; everything before it runs as usual.
    monkeypatch.setattr(task, "apply_async", lambda **kw: published.append(kw))
    key = TaskInstanceKey("good", "t", "r1", 1)
    executor.execute_async(key, good_command())
    [message] = published
    verify(message["task_id"], message["args"][0], message["kwargs"][SIGNATURE_KWARG])
