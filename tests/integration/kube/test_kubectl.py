"""kubectl (a client nobody here wrote) against the local pods API, through the written kubeconfig."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from kubernetes import client

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (Debian: kubernetes-client)")


def _kubectl(runtime, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECONFIG=str(runtime.kubeconfig_path))
    return subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60)


def _wait_phase(core: client.CoreV1Api, name: str, *phases: str) -> None:
    deadline = time.monotonic() + 30
    while core.read_namespaced_pod(name, "default").status.phase not in phases:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_kubectl_get_logs_and_delete(local_runtime) -> None:
    core = client.CoreV1Api(local_runtime.api_client())
    core.create_namespaced_pod("default", {
        "metadata": {"name": "greeter", "labels": {"app": "demo"}},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 3, "containers": [
            {"name": "base", "image": "crossdock/test:1",
             "command": ["sh", "-c", "echo hello; echo world; sleep 30"]}]}})
    _wait_phase(core, "greeter", "Running")

    listed = _kubectl(local_runtime, "get", "pods", "-l", "app=demo", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["pod/greeter"]

    phase = _kubectl(local_runtime, "get", "pod", "greeter", "-o", "jsonpath={.status.phase}")
    assert phase.stdout == "Running"

    table = _kubectl(local_runtime, "get", "pods").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table[1].split()[:4] == ["greeter", "1/1", "Running", "0"]

    deadline = time.monotonic() + 30
    logs = _kubectl(local_runtime, "logs", "greeter")
    while logs.stdout != "hello\nworld\n" and time.monotonic() < deadline:
        time.sleep(0.1)
        logs = _kubectl(local_runtime, "logs", "greeter")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "hello\nworld\n"
    assert _kubectl(local_runtime, "logs", "greeter", "--tail=1").stdout == "world\n"

    deleted = _kubectl(local_runtime, "delete", "pod", "greeter")
    assert deleted.returncode == 0, deleted.stderr
    assert 'pod "greeter" deleted' in deleted.stdout
    gone = _kubectl(local_runtime, "get", "pod", "greeter")
    assert gone.returncode != 0
    assert 'pods "greeter" not found' in gone.stderr


def test_kubectl_reports_missing_pod_and_empty_namespace(local_runtime) -> None:
    empty = _kubectl(local_runtime, "get", "pods")
    assert empty.returncode == 0
    assert "No resources found in default namespace." in empty.stderr + empty.stdout
    missing = _kubectl(local_runtime, "logs", "nobody")
    assert missing.returncode != 0
    assert 'pods "nobody" not found' in missing.stderr
