"""No DB credentials in pods or workers: what a try can see holds no metadata URL and no secret.

The scheduler side is given, as environment, what a production setup carries: the
metadata database URL with a password (the real PostgreSQL, which trusts local users and
so accepts it), a broker URL with a password and the task signing key. Each executor
then runs one real try whose task writes its ``os.environ`` to a file, and the test
looks for those values there, in the Celery worker's own environment, and in the pod
spec as the official kubernetes client reads it back from the local pod runtime.
"""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from crossdock import database
from crossdock.configuration import conf
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import task_run_command
from crossdock.state import TaskInstanceState as S
from service_gates import POSTGRES_URL, REDIS_URL, require_service
from executor_doubles import FakeTI

WAIT_LIMIT = 60.0
DB_PASSWORD = "db-pa55-" + uuid.uuid4().hex[:8]
SIGNING_KEY = "signing-key-" + uuid.uuid4().hex
BROKER_PASSWORD = "br0ker-" + uuid.uuid4().hex[:8]

pytestmark = pytest.mark.postgres


@pytest.fixture
def secrets_in_env(postgres_url, crossdock_home, monkeypatch):
    """The scheduler's environment with real secrets in it, and a DAG whose task dumps its environment."""
    db_url = POSTGRES_URL.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
    assert DB_PASSWORD in db_url
    dags = crossdock_home / "dags"
    dags.mkdir(exist_ok=True)
    out = crossdock_home / "out"
    out.mkdir()
    (dags / "env_dump.py").write_text(textwrap.dedent(f"""
        import json, os
        from crossdock import DAG, PythonOperator

        def dump():
            with open(os.path.join({str(out)!r}, "env.json"), "w") as handle:
                json.dump(dict(os.environ), handle)

        with DAG("env_dump") as dag:
            PythonOperator("dump", python_callable=dump, queue="kubernetes")
    """))
    monkeypatch.setenv("CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN", db_url)
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(dags))
    monkeypatch.setenv("CROSSDOCK__CELERY__TASK_SIGNING_KEY", SIGNING_KEY)
    conf.reload()
    database.dispose_engine()
    database.migrate()  # the password really is part of a working metadata URL
    return {"db_url": db_url, "out": out, "dags": dags}


def forbidden_values(db_url: str) -> list[str]:
    return [db_url, DB_PASSWORD, SIGNING_KEY, BROKER_PASSWORD]


def assert_clean(what: str, text: str, db_url: str) -> None:
    for value in forbidden_values(db_url):
        assert value not in text, f"{what} holds a secret ({value[:12]}...)"
    for name in ("CROSSDOCK__DATABASE__", "CROSSDOCK__CELERY__TASK_SIGNING_KEY", "CROSSDOCK__CELERY__BROKER_URL"):
        assert name not in text, f"{what} holds {name}"


def dumped_env(out: Path) -> dict[str, str]:
    deadline = time.monotonic() + WAIT_LIMIT
    path = out / "env.json"
    while not path.exists():
        assert time.monotonic() < deadline, "the task never wrote its environment"
        time.sleep(0.05)
    time.sleep(0.1)  # let the write finish
    return json.loads(path.read_text())


def run_executor_until_final(executor, key) -> tuple:
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        executor.heartbeat()
        event = executor.get_event_buffer().get(key)
        if event and event[0] in (S.SUCCESS, S.FAILED):
            return event
        time.sleep(0.05)
    raise AssertionError(f"no outcome for {key}")


KEY = TaskInstanceKey("env_dump", "dump", "r1", 1)
COMMAND = task_run_command(KEY, subdir="DAGS_FOLDER/env_dump.py")


def test_a_local_executor_try_sees_no_database_url(secrets_in_env):
    from crossdock.executors.local_executor import LocalExecutor

    executor = LocalExecutor(parallelism=1)
    executor.start()
    try:
        executor.execute_async(KEY, COMMAND)
        assert run_executor_until_final(executor, KEY)[0] == S.SUCCESS
    finally:
        executor.end()
    env = dumped_env(secrets_in_env["out"])
    assert env["CROSSDOCK__CORE__DAGS_FOLDER"] == str(secrets_in_env["dags"])  # what it needs, it has
    assert_clean("the LocalExecutor try's environment", json.dumps(env), secrets_in_env["db_url"])


@pytest.mark.redis
def test_a_celery_try_and_its_worker_see_no_database_url(secrets_in_env, monkeypatch):
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.executors.celery_worker import start_embedded_workers

    require_service("redis")
    monkeypatch.setenv("CROSSDOCK__CELERY__BROKER_URL", f"{REDIS_URL}/0")
    monkeypatch.setenv("CROSSDOCK__CELERY__RESULT_BACKEND", f"{REDIS_URL}/1")
    conf.reload()
    queue = f"nosecrets-{uuid.uuid4().hex[:10]}"
    with start_embedded_workers(queues=[queue], concurrency=1, hostname_prefix="nosecrets-") as workers:
        executor = CeleryExecutor()
        executor.start()
        executor.queue_command(FakeTI(KEY), COMMAND, queue=queue)
        assert run_executor_until_final(executor, KEY)[0] == S.SUCCESS  # signed with the shared key
        worker_env = Path(f"/proc/{workers.processes[0].pid}/environ").read_bytes().decode(errors="replace")
    db_url = secrets_in_env["db_url"]
    assert db_url not in worker_env and "CROSSDOCK__DATABASE__" not in worker_env
    env = dumped_env(secrets_in_env["out"])
    assert env["CROSSDOCK__CORE__DAGS_FOLDER"] == str(secrets_in_env["dags"])
    assert_clean("the Celery try's environment", json.dumps(env), db_url)
    assert f"{REDIS_URL}/0" not in json.dumps(env)  # the try does not need the broker either


@pytest.fixture(scope="module")
def pod_runtime(tmp_path_factory):
    from crossdock.kubernetes.local_runtime import start_local_runtime

    runtime = start_local_runtime(state_dir=tmp_path_factory.mktemp("pod-runtime"))
    yield runtime
    runtime.stop()


def test_a_pod_spec_and_the_pod_try_hold_no_database_url(secrets_in_env, pod_runtime, monkeypatch):
    from kubernetes import client

    from crossdock.executors.kubernetes_executor import KubernetesExecutor

    namespace = f"nosecrets-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(pod_runtime.api_client())
    core.create_namespace({"metadata": {"name": namespace}})
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__NAMESPACE", namespace)
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__SHARE_LOCAL_ENVIRONMENT", "True")  # the embedded default
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS", "False")  # so its spec can be read
    monkeypatch.setenv("CROSSDOCK__CELERY__BROKER_URL", f"amqp://worker:{BROKER_PASSWORD}@127.0.0.1:5672//")
    conf.reload()
    executor = KubernetesExecutor(api_client=pod_runtime.api_client())
    executor.start()
    try:
        executor.execute_async(KEY, COMMAND)
        assert run_executor_until_final(executor, KEY)[0] == S.SUCCESS
    finally:
        executor.end()
    pods = json.loads(core.list_namespaced_pod(namespace, _preload_content=False).data)["items"]
    assert len(pods) == 1
    [container] = pods[0]["spec"]["containers"]
    names = {entry["name"] for entry in container.get("env") or []}
    assert "CROSSDOCK__CORE__DAGS_FOLDER" in names  # the local environment is still shared
    db_url = secrets_in_env["db_url"]
    assert_clean("the pod spec", json.dumps(pods), db_url)
    env = dumped_env(secrets_in_env["out"])
    assert env["CROSSDOCK__CORE__DAGS_FOLDER"] == str(secrets_in_env["dags"])
    assert_clean("the pod try's environment", json.dumps(env), db_url)
