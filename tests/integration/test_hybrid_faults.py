"""Faults on one side of the hybrid executor: the other side keeps working, nothing crosses over.

Celery runs on the serverless broker (or a broker that is down on purpose), pods on the
local pod runtime, metadata in the per-test SQLite database, so these tests need no
server. A Kubernetes API that answers 500 comes from the runtime's fault hook, the
only stand-in here: a real cluster cannot be made to fail on demand.
"""

from __future__ import annotations

import json
import socket
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from kubernetes import client

from crossdock.kubernetes.pod_generator import WORKER_LABEL, annotations_to_key
from test_hybrid_services import FAST_SCHEDULER, hybrid_stack, run_dag, set_env, task_instances

#: Seconds the in-flight tasks of the restart test sleep: long enough to be caught running.
IN_FLIGHT_SECONDS = 4
#: Seconds the restart test waits for both tasks to be running.
START_TIMEOUT = 60

TWO_SIDES_DAG = """
    import os, time
    from crossdock import DAG, PythonOperator

    MARKERS = {markers!r}

    def record(name, sleep=0):
        def work():
            with open(os.path.join(MARKERS, name), "a") as handle:
                handle.write(f"{{os.getpid()}}\\n")
            time.sleep(sleep)
        return work

    with DAG({dag_id!r}) as dag:
        PythonOperator("pod_task", python_callable=record("pod_task", {sleep}), queue="kubernetes", retries=0)
        PythonOperator("celery_task", python_callable=record("celery_task", {sleep}), queue="default", retries=0)
"""


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def two_sides_dag(crossdock_home, monkeypatch):
    """A DAG folder and marker folder; returns a writer of the two-task DAG (one pod task, one Celery task)."""
    folder, markers = crossdock_home / "dags", crossdock_home / "markers"
    folder.mkdir()
    markers.mkdir()
    set_env(monkeypatch, {"CORE__EXECUTOR": "CeleryKubernetesExecutor", "CORE__DAGS_FOLDER": str(folder),
                          # Keep finished pods, so the test can list every pod that was ever created.
                          "KUBERNETES_EXECUTOR__DELETE_WORKER_PODS": "False", **FAST_SCHEDULER})

    def write(dag_id: str, *, sleep: float = 0) -> Path:
        (folder / f"{dag_id}.py").write_text(textwrap.dedent(TWO_SIDES_DAG.format(
            markers=str(markers), dag_id=dag_id, sleep=sleep)))
        return markers

    return write


def list_pods(runtime) -> list[dict]:
    """Every pod on the runtime, through the official client."""
    api = runtime.api_client()
    try:
        response = client.CoreV1Api(api).list_pod_for_all_namespaces(_preload_content=False)
        return json.loads(response.data)["items"]
    finally:
        api.close()


def pods_by_task(runtime) -> dict[str, list[str]]:
    """Task id → names of the pods created for it."""
    found: dict[str, list[str]] = {}
    for pod in list_pods(runtime):
        key = annotations_to_key(pod["metadata"].get("annotations"))
        found.setdefault(key.task_id if key else "?", []).append(pod["metadata"]["name"])
    return found


def runs_of(markers: Path, task_id: str) -> int:
    path = markers / task_id
    return len(path.read_text().split()) if path.exists() else 0


def test_celery_broker_down_pods_keep_running_and_the_celery_task_fails_with_the_publish_reason(
        two_sides_dag, monkeypatch):
    markers = two_sides_dag("broker_down")
    port = closed_port()
    set_env(monkeypatch, {"CELERY__BROKER_URL": f"redis://127.0.0.1:{port}/0",
                          "CELERY__OPERATION_TIMEOUT": "0.3",
                          "CELERY__TASK_PUBLISH_MAX_RETRIES": "1"})
    with hybrid_stack(monkeypatch, queues=["default"], celery_workers=False) as runtime:
        state, tis = run_dag("broker_down")
        pods = pods_by_task(runtime)

    pod_task, celery_task = tis["pod_task"], tis["celery_task"]
    assert pod_task.state == "success", pod_task.failure_reason
    assert pod_task.executor == "KubernetesExecutor" and runs_of(markers, "pod_task") == 1
    assert celery_task.state == "failed"
    assert "could not publish to the broker after 2 tries" in celery_task.failure_reason
    assert f"127.0.0.1:{port}" in celery_task.failure_reason  # the broker's own error, naming the broker
    assert celery_task.executor == "CeleryExecutor"
    # Nothing crossed over: the Celery task never became a pod and never ran anywhere.
    assert pods == {"pod_task": [pod_task.hostname]}
    assert runs_of(markers, "celery_task") == 0
    assert state == "failed"


@pytest.mark.parametrize("outage", ["api_answers_500", "api_unreachable"])
def test_kubernetes_api_failing_celery_keeps_working_and_the_pod_task_fails_with_a_reason(
        two_sides_dag, monkeypatch, crossdock_home, outage):
    markers = two_sides_dag("kube_down")
    set_env(monkeypatch, {"KUBERNETES_EXECUTOR__TASK_PUBLISH_MAX_RETRIES": "1"})
    with hybrid_stack(monkeypatch, queues=["default"]) as runtime:
        if outage == "api_answers_500":
            # Every pod creation is refused by the API server (the runtime's fault hook).
            runtime.api.faults.fail_next(count=1000, code=500, method="POST", path_contains="/pods")
            expected = "500 injected failure"
        else:
            # The scheduler's kubeconfig points at a port nothing listens on.
            port = closed_port()
            kubeconfig = crossdock_home / "unreachable-kubeconfig"
            text = runtime.kubeconfig_path.read_text()
            assert runtime.url in text
            kubeconfig.write_text(text.replace(runtime.url, f"http://127.0.0.1:{port}"))
            set_env(monkeypatch, {"KUBERNETES_EXECUTOR__CONFIG_FILE": str(kubeconfig)})
            expected = f"connection error: HTTPConnectionPool(host='127.0.0.1', port={port})"
        state, tis = run_dag("kube_down")
        pods = pods_by_task(runtime)

    pod_task, celery_task = tis["pod_task"], tis["celery_task"]
    assert celery_task.state == "success", celery_task.failure_reason
    assert celery_task.executor == "CeleryExecutor" and runs_of(markers, "celery_task") == 1
    assert pod_task.state == "failed"
    assert "could not be created after 2 attempts" in pod_task.failure_reason
    assert expected in pod_task.failure_reason
    assert pod_task.executor == "KubernetesExecutor"
    # Nothing crossed over: no Celery task id was ever given to it and it ran nowhere.
    assert pod_task.external_executor_id is None and pod_task.hostname is None
    assert runs_of(markers, "pod_task") == 0
    assert pods == {}
    assert state == "failed"


def test_scheduler_restart_with_tasks_in_flight_on_both_sides_each_side_adopts_its_own(
        two_sides_dag, monkeypatch):
    from sqlalchemy import update

    from crossdock.cli.dags_command import parse_dags_folder_into_db
    from crossdock.database import create_session
    from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor
    from crossdock.executors.executor_loader import load_executors
    from crossdock.models import Job
    from crossdock.models.base import utcnow
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    markers = two_sides_dag("in_flight", sleep=IN_FLIGHT_SECONDS)
    set_env(monkeypatch, {"SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "1"})
    with hybrid_stack(monkeypatch, queues=["default"]) as runtime:
        assert not parse_dags_folder_into_db()
        with create_session() as session:
            create_dag_run(session, dag_id="in_flight", run_id="r1")

        crashed = SchedulerJob(executors=load_executors(), parse_dags=False)
        crashed.start()
        deadline = time.monotonic() + START_TIMEOUT
        while {ti.state for ti in task_instances("in_flight", "r1").values()} != {"running"}:
            assert time.monotonic() < deadline, task_instances("in_flight", "r1")
            crashed.loop_once()
            time.sleep(0.02)
        before = task_instances("in_flight", "r1")
        # The scheduler dies here: no shutdown, its pod watchers gone with the process, its heartbeat stale.
        crashed_hybrid = crashed.executors[0]
        assert isinstance(crashed_hybrid, CeleryKubernetesExecutor)
        crashed_hybrid.kubernetes_executor._stop_watchers()
        with create_session() as session:
            session.execute(update(Job).where(Job.id == crashed.job_id)
                            .values(latest_heartbeat=utcnow() - timedelta(seconds=60)))

        replacement_hybrid = load_executors()[0]
        replacement = SchedulerJob(executors=[replacement_hybrid], parse_dags=False)
        deadline = time.monotonic() + START_TIMEOUT
        replacement.run(stop_when=lambda j: (j.loop_count > 1 and not j.runs) or time.monotonic() > deadline)
        pods = list_pods(runtime)

    after = task_instances("in_flight", "r1")
    for task_id, executor in (("pod_task", "KubernetesExecutor"), ("celery_task", "CeleryExecutor")):
        ti = after[task_id]
        assert ti.state == "success", (task_id, ti.failure_reason)
        assert ti.try_number == 1, task_id
        assert ti.executor == executor
        assert ti.queued_by_job_id == replacement.job_id != crashed.job_id
        assert ti.external_executor_id == before[task_id].external_executor_id  # the same pod / Celery task
        assert runs_of(markers, task_id) == 1, f"{task_id} ran more than once"
    # The Kubernetes side adopted the one pod it had: relabelled to the new job, no new pod for the same try ...
    assert [pod["metadata"]["name"] for pod in pods] == [after["pod_task"].external_executor_id]
    assert pods[0]["metadata"]["labels"][WORKER_LABEL] == str(replacement.job_id)
    # ... and the Celery side is the one that tracked the Celery task to its end.
    assert after["celery_task"].hostname.startswith("embedded")
