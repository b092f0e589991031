"""The hybrid executor end to end against the production services.

Redis is the Celery broker (a database number of its own, purged first, since other
tests share the server), PostgreSQL holds both the Celery results and the metadata
database, and pods run on the local pod runtime through the official client. The
seed's hybrid_execution DAG and its "Custom Queue Configuration" variant run through
the scheduler; the CLI then shows which executor ran each task.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager

import pytest

from crossdock.configuration import conf
from service_gates import POSTGRES_URL, REDIS_URL, require_service

#: Redis database of these tests: purged before each, so stale messages of an earlier run never arrive.
REDIS_DB = 7
#: Seconds a whole DAG run may take before the scheduler loop gives up.
RUN_TIMEOUT = 60
#: Scheduler settings that keep a test run short (the loop reacts within milliseconds).
FAST_SCHEDULER = {
    "SCHEDULER__MAX_LOOP_SLEEP": "0.02",
    "SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0",
}


def set_env(monkeypatch, values: dict[str, str]) -> None:
    """``CROSSDOCK__<KEY>`` overrides; set before workers and pods start, since they read their own."""
    for key, value in values.items():
        monkeypatch.setenv(f"CROSSDOCK__{key}", value)
    conf.reload()


@contextmanager
def hybrid_stack(monkeypatch, *, queues: list[str], celery_workers: bool = True):
    """The local pod runtime and one embedded Celery worker on ``queues``, with the config already set.

    :param celery_workers: start the worker (False when the broker is meant to be unreachable).
    """
    from crossdock.executors.celery_worker import start_embedded_workers
    from crossdock.kubernetes.local_runtime.standalone import (
        CONFIG_FILE_ENV, SHARE_ENV, start_runtime_unless_configured,
    )

    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv(CONFIG_FILE_ENV, raising=False)  # restored after the test
    monkeypatch.delenv(SHARE_ENV, raising=False)
    conf.reload()
    runtime = start_runtime_unless_configured()
    assert runtime is not None, "no cluster is configured, so the local runtime must start"
    workers = None
    try:
        if celery_workers:
            workers = start_embedded_workers(queues=queues, concurrency=2)
        yield runtime
    finally:
        if workers is not None:
            workers.stop(timeout=0)  # no warm shutdown: its tries are over (process_helpers.killed_when_done)
        runtime.stop()


def purge_redis_db(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


def run_dag(dag_id: str, *, run_id: str = "r1", timeout: float = RUN_TIMEOUT):
    """Parse the DAG folder, trigger ``dag_id`` and run a scheduler with the configured executors until it ends."""
    from crossdock.cli.dags_command import parse_dags_folder_into_db
    from crossdock.database import create_session
    from crossdock.executors.executor_loader import load_executors
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    errors = parse_dags_folder_into_db()
    assert not errors, errors
    with create_session() as session:
        create_dag_run(session, dag_id=dag_id, run_id=run_id)
    job = SchedulerJob(executors=load_executors(), parse_dags=False)
    deadline = time.monotonic() + timeout
    job.run(stop_when=lambda j: (j.loop_count > 1 and not j.runs) or time.monotonic() > deadline)
    return run_state(dag_id, run_id), task_instances(dag_id, run_id)


def run_state(dag_id: str, run_id: str) -> str:
    from sqlalchemy import select

    from crossdock.database import create_session
    from crossdock.models import DagRun

    with create_session() as session:
        return session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))


def task_instances(dag_id: str, run_id: str) -> dict:
    from sqlalchemy import select

    from crossdock.database import create_session
    from crossdock.models import TaskInstance

    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                         TaskInstance.run_id == run_id)).all()
        for ti in tis:
            session.expunge(ti)
    return {ti.task_id: ti for ti in tis}


def states_from_cli(dag_id: str, run_id: str) -> list[dict]:
    """``crossdock tasks states-for-dag-run -o json`` in a process of its own, with this test's environment."""
    result = subprocess.run(
        [sys.executable, "-m", "crossdock.cli.main", "tasks", "states-for-dag-run", dag_id, run_id, "-o", "json"],
        env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def production_services(crossdock_home, postgres_url, monkeypatch):
    """Redis broker (own database, purged) + PostgreSQL results and metadata; the runtime and workers come later."""
    require_service("redis")
    broker_url = f"{REDIS_URL}/{REDIS_DB}"
    purge_redis_db(broker_url)
    set_env(monkeypatch, {
        "CORE__EXECUTOR": "CeleryKubernetesExecutor",
        "CELERY__BROKER_URL": broker_url,
        "CELERY__RESULT_BACKEND": "db+" + POSTGRES_URL,
        **FAST_SCHEDULER,
    })
    yield broker_url


@pytest.mark.redis
@pytest.mark.postgres
def test_seed_hybrid_dag_on_redis_and_postgres_records_each_tasks_executor(production_services, monkeypatch):
    from crossdock.cli.demo_command import EXAMPLE_DAGS_FOLDER

    set_env(monkeypatch, {"CORE__DAGS_FOLDER": str(EXAMPLE_DAGS_FOLDER)})
    with hybrid_stack(monkeypatch, queues=["default", "high_memory"]):
        state, tis = run_dag("hybrid_execution")

    assert {task_id: ti.state for task_id, ti in tis.items()} == dict.fromkeys(
        ["kubernetes_task", "celery_task", "high_memory_task"], "success"), {
        task_id: ti.failure_reason for task_id, ti in tis.items()}
    assert state == "success"
    assert tis["kubernetes_task"].executor == "KubernetesExecutor"
    assert tis["celery_task"].executor == tis["high_memory_task"].executor == "CeleryExecutor"
    # Each side's own trace: a pod name for the pod, a Celery task id and worker for the others.
    assert tis["kubernetes_task"].hostname == tis["kubernetes_task"].external_executor_id
    assert tis["kubernetes_task"].hostname.startswith("hybrid-execution")
    for task_id in ("celery_task", "high_memory_task"):
        assert tis[task_id].hostname.startswith("embedded"), tis[task_id].hostname
        assert len(tis[task_id].external_executor_id) == 36  # the Celery task id (a UUID)
    assert all(ti.try_number == 1 for ti in tis.values())

    rows = {row["task_id"]: row for row in states_from_cli("hybrid_execution", "r1")}
    assert {task_id: (row["state"], row["queue"], row["executor"]) for task_id, row in rows.items()} == {
        "kubernetes_task": ("success", "kubernetes", "KubernetesExecutor"),
        "celery_task": ("success", "default", "CeleryExecutor"),
        "high_memory_task": ("success", "high_memory", "CeleryExecutor"),
    }


CUSTOM_QUEUE_DAG = """
    import os
    from crossdock import DAG, PythonOperator

    MARKERS = {markers!r}

    def record(name):
        def write():
            with open(os.path.join(MARKERS, name), "w") as handle:
                handle.write(os.environ.get("HOSTNAME", ""))
        return write

    with DAG("custom_queue") as dag:
        PythonOperator("special_kubernetes_task", python_callable=record("special"),
                       queue="special_k8s_queue", retries=0)
        PythonOperator("on_the_old_name", python_callable=record("old_name"), queue="kubernetes", retries=0)
"""


@pytest.mark.redis
@pytest.mark.postgres
def test_custom_kubernetes_queue_runs_in_a_pod_and_the_default_name_goes_to_celery(
        production_services, crossdock_home, monkeypatch):
    """The seed's Custom Queue Configuration: only special_k8s_queue means a pod; 'kubernetes' is a Celery queue."""
    folder, markers = crossdock_home / "dags", crossdock_home / "markers"
    folder.mkdir()
    markers.mkdir()
    (folder / "custom_queue.py").write_text(textwrap.dedent(CUSTOM_QUEUE_DAG.format(markers=str(markers))))
    set_env(monkeypatch, {"CORE__DAGS_FOLDER": str(folder),
                          "CELERY_KUBERNETES_EXECUTOR__KUBERNETES_QUEUE": "special_k8s_queue"})
    with hybrid_stack(monkeypatch, queues=["kubernetes"]):
        state, tis = run_dag("custom_queue")

    assert state == "success", {task_id: ti.failure_reason for task_id, ti in tis.items()}
    special, old_name = tis["special_kubernetes_task"], tis["on_the_old_name"]
    assert special.state == old_name.state == "success"
    assert special.executor == "KubernetesExecutor"
    assert old_name.executor == "CeleryExecutor"
    # The special task ran inside its pod (the pod's name is its HOSTNAME there) ...
    assert (markers / "special").read_text() == special.hostname == special.external_executor_id
    # ... and the task on the queue named 'kubernetes' ran on the Celery worker listening to it.
    assert old_name.hostname.startswith("embedded")
    assert (markers / "old_name").read_text() != special.hostname
    rows = {row["task_id"]: row["executor"] for row in states_from_cli("custom_queue", "r1")}
    assert rows == {"special_kubernetes_task": "KubernetesExecutor", "on_the_old_name": "CeleryExecutor"}
