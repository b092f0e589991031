"""The hybrid executor with real children: Celery workers on the serverless broker, pods on
the local pod runtime. The seed's "Programmatic Usage" example runs as written (crossdock
imports), and the seed's hybrid DAG runs end to end through the scheduler.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from crossdock.configuration import conf
from crossdock.state import TaskInstanceState as S

EVENT_TIMEOUT = 60


@pytest.fixture
def hybrid_services(crossdock_home, monkeypatch):
    """A real embedded Celery worker (queues default, high_memory) and the local pod runtime."""
    from crossdock.executors.celery_worker import start_embedded_workers
    from crossdock.kubernetes.local_runtime.standalone import (
        CONFIG_FILE_ENV, SHARE_ENV, start_runtime_unless_configured,
    )

    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv(CONFIG_FILE_ENV, raising=False)  # restored after the test
    monkeypatch.delenv(SHARE_ENV, raising=False)
    monkeypatch.setenv("CROSSDOCK__CORE__EXECUTOR", "CeleryKubernetesExecutor")
    conf.reload()
    runtime = start_runtime_unless_configured()
    assert runtime is not None
    workers = start_embedded_workers(queues=["default", "high_memory"], concurrency=2)
    try:
        yield runtime
    finally:
        workers.stop(timeout=0)  # no warm shutdown: nothing runs now (process_helpers.killed_when_done)
        runtime.stop()


def wait_for_events(executor, keys, timeout=EVENT_TIMEOUT, *, seen=None):
    """Final events of ``keys``; every other event is collected into ``seen`` when given."""
    events = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executor.sync()
        for key, event in executor.get_event_buffer().items():
            if event[0] in (S.SUCCESS, S.FAILED):
                events[key] = event
            elif seen is not None:
                seen.setdefault(key, []).append(event)
        if set(keys) <= set(events):
            return events
        time.sleep(0.1)
    raise AssertionError(f"no final events for {set(keys) - set(events)} in {timeout} s; got {events}")


@pytest.fixture
def any_command_allowed(crossdock_home, monkeypatch):
    """[core] task_commands_only off, set before the workers start (they read their own config)."""
    monkeypatch.setenv("CROSSDOCK__CORE__TASK_COMMANDS_ONLY", "False")
    conf.reload()


def test_seed_programmatic_usage_runs_one_command_per_side(any_command_allowed, hybrid_services, tmp_path):
    """The seed's example verbatim, plus marker files proving each command really ran."""
    from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor
    from crossdock.models.taskinstancekey import TaskInstanceKey

    # Initialize hybrid executor
    executor = CeleryKubernetesExecutor()
    executor.start()

    # Task routed to Kubernetes
    k8s_key = TaskInstanceKey(dag_id="my_dag", task_id="k8s_task", run_id="manual_run", try_number=1)
    k8s_command = ["python", "-c", "print('K8s task')"]
    executor.execute_async(key=k8s_key, command=k8s_command, queue="kubernetes")

    # Task routed to Celery
    celery_key = TaskInstanceKey(dag_id="my_dag", task_id="celery_task", run_id="manual_run", try_number=1)
    celery_command = ["python", "-c", "print('Celery task')"]
    executor.execute_async(key=celery_key, command=celery_command, queue="default")

    # Sync states from both executors
    executor.sync()
    try:
        events = wait_for_events(executor, [k8s_key, celery_key])
        assert events[k8s_key][0] == S.SUCCESS, events[k8s_key]
        assert events[celery_key][0] == S.SUCCESS, events[celery_key]
        assert k8s_key not in executor.running and celery_key not in executor.running

        # The same through marker files: each side writes where it ran.
        marker_k8s, marker_celery = tmp_path / "k8s.txt", tmp_path / "celery.txt"
        write = "import os, sys; open(sys.argv[1], 'w').write(os.environ.get('HOSTNAME', 'worker'))"
        keys = [TaskInstanceKey("my_dag", "k8s_marker", "manual_run", 1),
                TaskInstanceKey("my_dag", "celery_marker", "manual_run", 1)]
        executor.execute_async(key=keys[0], command=[sys.executable, "-c", write, str(marker_k8s)],
                               queue="kubernetes")
        executor.execute_async(key=keys[1], command=[sys.executable, "-c", write, str(marker_celery)],
                               queue="default")
        seen: dict = {}
        events = wait_for_events(executor, keys, seen=seen)
        assert all(events[key][0] == S.SUCCESS for key in keys), events
        assert marker_k8s.exists() and marker_celery.exists()
        # The Kubernetes side reported its pod's name when it created it, and the process ran in that pod.
        pod_names = [info for state, info in seen.get(keys[0], []) if state == S.QUEUED]
        assert pod_names and marker_k8s.read_text() == pod_names[0]
        assert keys[1] not in seen or all(info != pod_names[0] for _, info in seen[keys[1]])
    finally:
        # Cleanup
        executor.end()


def test_task_commands_only_refuses_the_seeds_commands_by_default(hybrid_services):
    """With the default [core] task_commands_only the same commands are refused on both sides."""
    from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor
    from crossdock.models.taskinstancekey import TaskInstanceKey

    executor = CeleryKubernetesExecutor()
    executor.start()
    keys = [TaskInstanceKey("my_dag", "k8s_task", "manual_run", 1),
            TaskInstanceKey("my_dag", "celery_task", "manual_run", 1)]
    try:
        executor.execute_async(key=keys[0], command=["python", "-c", "print('K8s task')"], queue="kubernetes")
        executor.execute_async(key=keys[1], command=["python", "-c", "print('Celery task')"], queue="default")
        events = wait_for_events(executor, keys, timeout=20)
        for key in keys:
            state, reason = events[key]
            assert state == S.FAILED and "refusing to run" in reason
        assert executor.kubernetes_executor.pod_name(keys[0]) is None
    finally:
        executor.end()


@pytest.fixture
def example_dags(crossdock_home, monkeypatch):
    """The shipped example DAGs as the DAG folder, set before workers and pods start."""
    from crossdock.cli.demo_command import EXAMPLE_DAGS_FOLDER

    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(EXAMPLE_DAGS_FOLDER))
    conf.reload()


def test_seed_hybrid_dag_runs_each_task_on_its_side(example_dags, hybrid_services):
    """The seed's hybrid_execution DAG through the scheduler: one pod, two Celery tasks."""
    from sqlalchemy import select

    from crossdock.cli.dags_command import parse_dags_folder_into_db
    from crossdock.database import create_session
    from crossdock.executors.executor_loader import load_executors
    from crossdock.models import TaskInstance
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    parse_dags_folder_into_db()
    with create_session() as session:
        create_dag_run(session, dag_id="hybrid_execution", run_id="r1")
    job = SchedulerJob(executors=load_executors(), parse_dags=False)
    deadline = time.monotonic() + EVENT_TIMEOUT
    job.run(stop_when=lambda j: (j.loop_count > 1 and not j.runs) or time.monotonic() > deadline)
    with create_session() as session:
        tis = {ti.task_id: ti for ti in session.scalars(select(TaskInstance).where(
            TaskInstance.dag_id == "hybrid_execution", TaskInstance.run_id == "r1"))}
    assert {t: ti.state for t, ti in tis.items()} == dict.fromkeys(
        ["kubernetes_task", "celery_task", "high_memory_task"], "success")
    assert tis["kubernetes_task"].executor == "KubernetesExecutor"
    assert tis["celery_task"].executor == tis["high_memory_task"].executor == "CeleryExecutor"
    assert tis["kubernetes_task"].hostname.startswith("hybrid-execution")  # the pod's name
    log = Path(conf.getstr("logging", "base_log_folder")) / "dag_id=hybrid_execution" / "run_id=r1"
    assert "Running on Kubernetes" in (log / "task_id=kubernetes_task" / "attempt=1.log").read_text()
    assert "Running on Celery" in (log / "task_id=celery_task" / "attempt=1.log").read_text()
