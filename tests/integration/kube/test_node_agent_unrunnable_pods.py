"""A pod the node agent cannot run ends Failed with ``CreateContainerConfigError`` and a reason, never Pending.

Both API servers refuse a bad quantity at create time, so the pods here are written into
the local API's store directly: that is a pod some other API server (an older one, one
with other admission rules) let through, which the agent must still handle.
"""

from __future__ import annotations

import json
import time

from kubernetes import client

from crossdock.kubernetes.local_runtime.validation import default_pod

WAIT_LIMIT = 30.0


def _store_unchecked(runtime, name: str, container: dict) -> None:
    pod = default_pod({"metadata": {"name": name, "namespace": "default"},
                       "spec": {"restartPolicy": "Never", "containers": [
                           {"name": "base", "image": "crossdock/test:1", "command": ["true"], **container}]}})
    pod["status"] = {"phase": "Pending"}
    runtime.api.store.create("pods", pod, kind="Pod")


def _wait_terminal(core: client.CoreV1Api, name: str) -> dict:
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        body = json.loads(core.read_namespaced_pod(name, "default", _preload_content=False).data)
        if body["status"].get("phase") in ("Succeeded", "Failed"):
            return body
        assert time.monotonic() < deadline, f"{name} stuck in {body['status']}"
        time.sleep(0.05)


def test_unparsable_memory_limit_fails_the_pod_with_a_config_error(local_runtime) -> None:
    core = client.CoreV1Api(local_runtime.api_client())
    _store_unchecked(local_runtime, "lots-of-memory", {"resources": {"limits": {"memory": "lots"}}})
    pod = _wait_terminal(core, "lots-of-memory")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "CreateContainerConfigError"
    assert 'resources.limits.memory: invalid quantity "lots"' in pod["status"]["message"]
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError" and "lots" in waiting["message"]


def test_non_string_env_value_fails_the_pod_with_a_config_error(local_runtime) -> None:
    core = client.CoreV1Api(local_runtime.api_client())
    _store_unchecked(local_runtime, "int-env", {"env": [{"name": "RETRIES", "value": 5}]})
    pod = _wait_terminal(core, "int-env")
    assert pod["status"]["reason"] == "CreateContainerConfigError"
    assert pod["status"]["message"] == 'env "RETRIES": value must be a string, not int'


def test_any_failure_to_build_the_process_fails_the_pod_instead_of_leaving_it_pending(
        local_runtime, monkeypatch) -> None:
    from crossdock.kubernetes.local_runtime import pod_worker

    def broken_plan(*args, **kwargs):
        raise KeyError("something the spec did not have")

    monkeypatch.setattr(pod_worker, "build_plan", broken_plan)
    core = client.CoreV1Api(local_runtime.api_client())
    core.create_namespaced_pod("default", {"metadata": {"name": "unbuildable"}, "spec": {
        "restartPolicy": "Never", "containers": [{"name": "base", "image": "crossdock/test:1", "command": ["true"]}]}})
    pod = _wait_terminal(core, "unbuildable")
    assert pod["status"]["phase"] == "Failed" and pod["status"]["reason"] == "CreateContainerConfigError"
    assert "KeyError" in pod["status"]["message"] and "something the spec did not have" in pod["status"]["message"]
