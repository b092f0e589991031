"""Fault hooks of the local runtime, and the runtime surviving them.

These run on the local tier only: a real API server cannot be told to fail on demand,
which is exactly why the hooks exist.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from kubernetes import client, config

from crossdock.kubernetes.local_runtime import start_local_runtime
from crossdock.kubernetes.local_runtime.hook_client import runtime_request

WAIT_LIMIT = 30.0


def _hook(runtime, action: str, body: dict | None = None) -> dict:
    """POST a fault hook with the runtime's kubeconfig (its token and CA), as a user would."""
    api_client = config.new_client_from_config(config_file=str(runtime.kubeconfig_path))
    status, reply = runtime_request(api_client, "POST", f"/_crossdock/faults/{action}", body or {})
    assert status == 200, (status, reply)
    return reply


def _pod(name: str, command: list[str], **container) -> dict:
    return {"metadata": {"name": name}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "base", "image": "crossdock/test:1", "command": command, **container}]}}


def _wait_phase(core: client.CoreV1Api, name: str, *phases: str) -> client.V1Pod:
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        pod = core.read_namespaced_pod(name, "default")
        if pod.status.phase in phases:
            return pod
        assert time.monotonic() < deadline, f"{name} stuck in {pod.status.phase}"
        time.sleep(0.05)


def test_fail_next_answers_with_the_injected_status_then_recovers(local_runtime) -> None:
    core = client.CoreV1Api(local_runtime.api_client())
    _hook(local_runtime, "fail-next", {"count": 2, "code": 500, "method": "GET",
                                            "pathContains": "/namespaces/default/pods"})
    for _ in range(2):
        with pytest.raises(client.ApiException) as info:
            core.list_namespaced_pod("default")
        assert info.value.status == 500
        assert json.loads(info.value.body)["reason"] == "InternalError"
    assert core.list_namespaced_pod("default").items == []


def test_retry_after_is_sent_and_honoured_by_the_official_client(local_runtime) -> None:
    """urllib3 under the official client retries a 503 that carries Retry-After by itself."""
    core = client.CoreV1Api(local_runtime.api_client())
    local_runtime.api.faults.fail_next(count=1, code=503, retry_after=0, method="GET",
                                      path_contains="/namespaces/default/pods")
    assert core.list_namespaced_pod("default").items == []
    assert local_runtime.api.faults.describe()["failNext"] == []
    local_runtime.api.faults.fail_next(count=1, code=429, retry_after=7, method="POST")
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_pod("default", _pod("throttled", ["true"]))
    assert info.value.status == 429
    assert info.value.headers["Retry-After"] == "7"
    assert json.loads(info.value.body)["details"] == {"retryAfterSeconds": 7}


def test_agent_rides_out_failing_status_updates(local_runtime) -> None:
    core = client.CoreV1Api(local_runtime.api_client())
    local_runtime.api.faults.fail_next(count=3, code=500, path_contains="/status")
    core.create_namespaced_pod("default", _pod("flaky", ["true"]))
    pod = _wait_phase(core, "flaky", "Succeeded", "Failed")
    assert pod.status.phase == "Succeeded"
    assert local_runtime.api.faults.describe()["failNext"] == []


def test_compaction_turns_old_watches_into_410_and_the_agent_relists(local_runtime) -> None:
    core = client.CoreV1Api(local_runtime.api_client())
    first = core.create_namespaced_pod("default", _pod("before", ["true"]))
    _wait_phase(core, "before", "Succeeded")
    compacted = _hook(local_runtime, "compact")
    assert int(compacted["compactedResourceVersion"]) > int(first.metadata.resource_version)
    response = core.list_namespaced_pod("default", watch=True, resource_version=first.metadata.resource_version,
                                        timeout_seconds=1, _preload_content=False)
    event = json.loads(response.read().splitlines()[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
    assert event["object"]["message"].startswith("too old resource version:")
    core.create_namespaced_pod("default", _pod("after", ["true"]))
    assert _wait_phase(core, "after", "Succeeded", "Failed").status.phase == "Succeeded"


def test_history_limit_compacts_by_itself(tmp_path) -> None:
    runtime = start_local_runtime(state_dir=tmp_path, with_agent=False, history_limit=10)
    try:
        core = client.CoreV1Api(runtime.api_client())
        first = core.create_namespaced_pod("default", _pod("p0", ["true"]))
        for index in range(1, 20):
            core.create_namespaced_pod("default", _pod(f"p{index}", ["true"]))
        response = core.list_namespaced_pod("default", watch=True, resource_version=first.metadata.resource_version,
                                            timeout_seconds=1, _preload_content=False)
        assert json.loads(response.read().splitlines()[0])["object"]["code"] == 410
    finally:
        runtime.stop()


def test_hold_pending_keeps_pods_unbound_until_released(local_runtime) -> None:
    core = client.CoreV1Api(local_runtime.api_client())
    _hook(local_runtime, "hold-pending", {"hold": True})
    core.create_namespaced_pod("default", _pod("held", ["true"]))
    time.sleep(0.5)
    pod = core.read_namespaced_pod("held", "default")
    assert pod.status.phase == "Pending" and not pod.spec.node_name
    _hook(local_runtime, "hold-pending", {"hold": False})
    assert _wait_phase(core, "held", "Succeeded", "Failed").status.phase == "Succeeded"


def test_killing_a_pods_process_fails_the_pod(local_runtime) -> None:
    core = client.CoreV1Api(local_runtime.api_client())
    core.create_namespaced_pod("default", _pod("victim", ["sleep", "30"]))
    _wait_phase(core, "victim", "Running")
    assert _hook(local_runtime, "kill", {"namespace": "default", "name": "victim", "signal": signal.SIGKILL}) \
        == {"killed": True}
    pod = _wait_phase(core, "victim", "Succeeded", "Failed")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 137
    assert pod.status.container_statuses[0].state.terminated.reason == "Error"


def test_api_restart_keeps_pods(tmp_path) -> None:
    runtime = start_local_runtime(state_dir=tmp_path, with_agent=False)
    core = client.CoreV1Api(runtime.api_client())
    created = core.create_namespaced_pod("default", _pod("kept", ["true"]))
    runtime.stop()
    again = start_local_runtime(state_dir=tmp_path, with_agent=False)
    try:
        core = client.CoreV1Api(again.api_client())
        pod = core.read_namespaced_pod("kept", "default")
        assert pod.metadata.uid == created.metadata.uid
        # versions keep growing after a restart, and the old ones are gone for watches
        newer = core.create_namespaced_pod("default", _pod("newer", ["true"]))
        assert int(newer.metadata.resource_version) > int(created.metadata.resource_version)
    finally:
        again.stop()


def test_restart_policy_on_failure_restarts_and_counts(local_runtime, monkeypatch) -> None:
    from crossdock.kubernetes.local_runtime import pod_worker

    monkeypatch.setattr(pod_worker, "CRASH_BACKOFF_SECONDS", 0.1)
    core = client.CoreV1Api(local_runtime.api_client())
    marker = local_runtime.kubeconfig_path.parent / "second-try"
    body = _pod("retrier", ["sh", "-c", f"test -e {marker} || {{ touch {marker}; exit 1; }}"])
    body["spec"]["restartPolicy"] = "OnFailure"
    core.create_namespaced_pod("default", body)
    pod = _wait_phase(core, "retrier", "Succeeded", "Failed")
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].restart_count == 1


def test_killed_agent_process_loses_no_outcome(tmp_path) -> None:
    """The agent as its own process (the CLI), SIGKILLed while pods run, then started again."""
    import subprocess
    import sys

    runtime = start_local_runtime(state_dir=tmp_path / "api", with_agent=False)
    command = [sys.executable, "-m", "crossdock.cli.kubernetes_command", "local-runtime", "--agent-only",
               "--kubeconfig", str(runtime.kubeconfig_path), "--state-dir", str(tmp_path / "node"),
               "--node-name", "crashy"]

    def start_agent() -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().startswith("node agent crashy")
        return process

    agent = start_agent()
    try:
        core = client.CoreV1Api(runtime.api_client())
        quick_gate, slow_gate = tmp_path / "quick", tmp_path / "slow"
        wait = "while [ ! -e {} ]; do sleep 0.02; done"
        core.create_namespaced_pod("default", _pod("quick", ["sh", "-c", f"{wait.format(quick_gate)}; exit 5"]))
        core.create_namespaced_pod("default", _pod("slow", ["sh", "-c", f"{wait.format(slow_gate)}; echo done"]))
        _wait_phase(core, "quick", "Running")
        _wait_phase(core, "slow", "Running")
        agent.kill()
        agent.wait()
        quick_gate.touch()  # finishes while the agent is dead
        uid = core.read_namespaced_pod("quick", "default").metadata.uid
        result = tmp_path / "node" / "agent" / "pods" / uid / "result.json"
        deadline = time.monotonic() + WAIT_LIMIT
        while not result.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert core.read_namespaced_pod("quick", "default").status.phase == "Running"
        agent = start_agent()
        slow_gate.touch()  # finishes under the new agent, which adopted it
        quick = _wait_phase(core, "quick", "Succeeded", "Failed")
        assert quick.status.container_statuses[0].state.terminated.exit_code == 5
        slow = _wait_phase(core, "slow", "Succeeded", "Failed")
        assert slow.status.phase == "Succeeded"
        assert core.read_namespaced_pod_log("slow", "default") == "done\n"
    finally:
        agent.terminate()
        agent.wait(15)
        runtime.stop()


def test_agent_relists_after_failing_to_handle_an_event(tmp_path, monkeypatch) -> None:
    """A pod whose ADDED event the agent could not handle (here: the handler raises once,
    as when no thread can be started) is still bound and run: the agent relists instead
    of resuming its watch past the lost event, where the pod would stay Pending."""
    from crossdock.configuration import conf
    from crossdock.kubernetes.local_runtime.node_agent import NodeAgent

    monkeypatch.setenv("CROSSDOCK_HOME", str(tmp_path / "home"))
    conf.reload()
    runtime = start_local_runtime(state_dir=tmp_path / "runtime", with_agent=False)
    agent = NodeAgent(api_client=runtime.api_client(), node_name="relist-node", state_dir=tmp_path / "agent")
    handle_unbound, failures = agent._on_unbound_pod, []

    def fail_first_added(event_type: str, pod: dict) -> None:
        if event_type == "ADDED" and pod["metadata"]["name"] == "lost-event" and not failures:
            failures.append(pod["metadata"]["name"])
            raise RuntimeError("can't start new thread")
        handle_unbound(event_type, pod)

    agent._on_unbound_pod = fail_first_added
    agent.start()
    try:
        core = client.CoreV1Api(runtime.api_client())
        core.create_namespaced_pod("default", _pod("lost-event", ["true"]))
        pod = _wait_phase(core, "lost-event", "Succeeded", "Failed")
        assert failures == ["lost-event"]
        assert pod.status.phase == "Succeeded"
        assert pod.spec.node_name == "relist-node"
    finally:
        agent.stop(kill_pods=True)
        runtime.stop()
        conf.reload()
