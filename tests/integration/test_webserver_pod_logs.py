"""A running pod's log, read by a process that is not the scheduler (the web server).

On a cluster the try's log file is in the pod, not here; the reads then find the pod by
the try's labels through the official client and read its container log, following it
by offset as it grows. The pods API is the local pod runtime (a real HTTP server the
official client talks to); the pods are real processes.
"""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client
from process_helpers import wait_for

from crossdock import database
from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.kubernetes.local_runtime import start_local_runtime
from crossdock.kubernetes.pod_generator import EXECUTOR_LABEL, key_annotations, key_labels
from crossdock.models import DagModel, DagRun, TaskInstance
from crossdock.models.base import utcnow
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.operations.reads.logs import read_task_log


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    runtime = start_local_runtime(state_dir=tmp_path / "pods")
    namespace = f"logs-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(runtime.api_client())
    core.create_namespace({"metadata": {"name": namespace}})
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__CONFIG_FILE", str(runtime.kubeconfig_path))
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__NAMESPACE", namespace)
    conf.reload()
    try:
        yield core, namespace
    finally:
        runtime.stop()


def _running_try(key: TaskInstanceKey) -> None:
    """The rows the scheduler holds while a pod runs the try."""
    database.migrate()
    now = utcnow()
    with create_session() as session:
        session.add(DagModel(dag_id=key.dag_id, fileloc="/dags/podded.py", is_paused=False, is_active=True))
        session.add(DagRun(dag_id=key.dag_id, run_id=key.run_id, run_type="manual", logical_date=now,
                           state="running", start_date=now))
        session.add(TaskInstance(dag_id=key.dag_id, task_id=key.task_id, run_id=key.run_id, map_index=-1,
                                 try_number=key.try_number, state="running", queue="kubernetes",
                                 executor="KubernetesExecutor", hostname="whatever-pod", start_date=now))


def _pod(core, namespace, key: TaskInstanceKey, name: str, script: str) -> None:
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {**key_labels(key), EXECUTOR_LABEL: "True"},
                     "annotations": key_annotations(key)},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "base", "image": "crossdock/test:1", "command": ["sh", "-c", script]}]}})


def test_a_running_pod_s_log_is_read_from_the_pod_and_followed(cluster):
    core, namespace = cluster
    key = TaskInstanceKey("podded", "work", "r1", 2, -1)
    _running_try(key)
    # A pod of the try before, with the same ids but another try number, must not be read.
    _pod(core, namespace, key.with_try_number(1), "work-try-1", "echo from the first try; sleep 30")
    _pod(core, namespace, key, "work-try-2", "echo line one; echo line two; sleep 1.5; echo line three; sleep 30")
    args = dict(dag_id="podded", run_id="r1", task_id="work", try_number=2)
    first = {}

    def two_lines():
        first.update(read_task_log(**args))
        return "line two\n" in first["content"]

    assert wait_for(two_lines, limit=30), first
    assert first["source"] == f"log of running pod {namespace}/work-try-2"
    assert "first try" not in first["content"] and first["finished"] is False
    later = {}

    def third_line():
        later.update(read_task_log(**args, offset=first["offset"]))
        return "line three" in later["content"]

    assert wait_for(third_line, limit=30), later
    assert "line one" not in later["content"]


def test_no_pod_and_no_file_says_no_log_yet(cluster):
    key = TaskInstanceKey("podded", "work", "r1", 1, -1)
    _running_try(key)
    chunk = read_task_log(dag_id="podded", run_id="r1", task_id="work", try_number=1)
    assert chunk["content"] == "" and chunk["source"].startswith("no log yet at") and not chunk["finished"]
