"""KubernetesExecutor rules that need no API server: pod status → try state, cleanup, config."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone

import pytest

from crossdock.configuration import ConfigError, conf
from crossdock.cli.kubernetes_pods_command import cleanup_reason
from crossdock.executors.kubernetes_executor import local_environment
from crossdock.kubernetes.kube_config import KubeExecutorConfig
from crossdock.kubernetes.kube_watcher import FAILED, RUNNING, SUCCESS, interpret_pod

FATAL = {"ErrImagePull", "CreateContainerConfigError", "InvalidImageName"}


def pod(phase, *, state=None, last_state=None, reason=None, message=None, deleting=False, name="p-1"):
    meta = {"name": name, "namespace": "default"}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    status = {"phase": phase}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if state is not None:
        status["containerStatuses"] = [{"name": "base", "state": state, "lastState": last_state or {}}]
    return {"metadata": meta, "status": status}


def test_running_and_succeeded_pods():
    assert interpret_pod(pod("Running", state={"running": {}})).state == RUNNING
    assert interpret_pod(pod("Succeeded", state={"terminated": {"exitCode": 0}})).state == SUCCESS


def test_failed_pod_reason_names_the_container_reason_and_exit_code():
    outcome = interpret_pod(pod("Failed", state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))
    assert outcome.state == FAILED and not outcome.before_start
    assert outcome.reason == "pod p-1: container base OOMKilled, exit code 137"
    outcome = interpret_pod(pod("Failed", state={"terminated": {"exitCode": 1, "reason": "Error",
                                                                "message": "bad\n"}}))
    assert outcome.reason == "pod p-1: container base Error, exit code 1: bad"


def test_pending_with_a_fatal_container_reason_fails_fast_and_others_wait():
    outcome = interpret_pod(pod("Pending", state={"waiting": {"reason": "ErrImagePull", "message": "not found"}}),
                            fatal_reasons=FATAL)
    assert outcome.state == FAILED and outcome.fatal_pending
    assert "ErrImagePull: not found" in outcome.reason
    assert interpret_pod(pod("Pending", state={"waiting": {"reason": "ContainerCreating"}}),
                         fatal_reasons=FATAL).state is None
    assert interpret_pod(pod("Pending")).state is None


def test_pod_deleted_while_running_is_a_failure():
    outcome = interpret_pod(pod("Running", state={"running": {}}, deleting=True))
    assert outcome.state == FAILED and "deleted while running" in outcome.reason


def test_evicted_before_start_may_be_relaunched_but_a_config_error_may_not():
    evicted = interpret_pod(pod("Failed", reason="Evicted", message="The node was low on resource: memory."))
    assert evicted.state == FAILED and evicted.before_start
    assert "Evicted: The node was low on resource: memory." in evicted.reason
    config_error = interpret_pod(pod("Failed", reason="CreateContainerConfigError", message="secret missing",
                                     state={"waiting": {"reason": "CreateContainerConfigError"}}),
                                 fatal_reasons=FATAL)
    assert config_error.state == FAILED and not config_error.before_start
    ran_before = interpret_pod(pod("Failed", reason="Evicted", state={"waiting": {}},
                                   last_state={"terminated": {"exitCode": 1}}))
    assert not ran_before.before_start


@pytest.mark.parametrize("phase, reason, age_minutes, expected", [
    ("Succeeded", None, 0, "Succeeded"),
    ("Failed", None, 0, "Failed"),
    ("Failed", "Evicted", 0, "Evicted"),
    ("Running", None, 100, None),
    ("Pending", None, 3, None),
    ("Pending", None, 31, "Pending for more than 30 minutes"),
])
def test_cleanup_reason(phase, reason, age_minutes, expected):
    now = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    created = (now - timedelta(minutes=age_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    item = pod(phase, reason=reason)
    item["metadata"]["creationTimestamp"] = created
    assert cleanup_reason(item, min_pending=timedelta(minutes=30), now=now) == expected


def test_config_defaults_and_overrides(monkeypatch):
    settings = KubeExecutorConfig.from_conf()
    assert settings.namespace == "default"
    assert settings.worker_image == "crossdock-worker:latest"
    assert settings.delete_worker_pods and not settings.delete_worker_pods_on_failure
    assert "ErrImagePull" in settings.fatal_container_reasons and settings.validate_commands
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__MULTI_NAMESPACE_MODE_NAMESPACE_LIST", "a, b")
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__WORKER_CONTAINER_TAG", "")
    conf.reload()
    settings = KubeExecutorConfig.from_conf()
    assert settings.multi_namespace_mode_namespace_list == ("a", "b")
    assert settings.worker_image == "crossdock-worker"


@pytest.mark.parametrize("key, value, message", [
    ("WORKER_PODS_CREATION_BATCH_SIZE", "0", "worker_pods_creation_batch_size must be at least 1"),
    ("TASK_PUBLISH_MAX_RETRIES", "-1", "task_publish_max_retries must not be negative"),
    ("DELETE_WORKER_PODS", "maybe", "[kubernetes_executor] delete_worker_pods = 'maybe' is not a valid bool"),
])
def test_bad_config_values_fail_naming_the_key(monkeypatch, key, value, message):
    monkeypatch.setenv(f"CROSSDOCK__KUBERNETES_EXECUTOR__{key}", value)
    conf.reload()
    with pytest.raises(ConfigError) as caught:
        KubeExecutorConfig.from_conf()
    assert message in str(caught.value)


def test_local_environment_finds_this_install_and_the_scheduler_folders(monkeypatch, crossdock_home):
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(crossdock_home / "my-dags"))
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__PARALLELISM", "3")
    conf.reload()
    env = local_environment()
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert env["CROSSDOCK_HOME"] == str(crossdock_home)
    assert env["CROSSDOCK__CORE__DAGS_FOLDER"] == str(crossdock_home / "my-dags")
    assert env["CROSSDOCK__LOGGING__BASE_LOG_FOLDER"] == str(crossdock_home / "logs")
    assert env["CROSSDOCK__SCHEDULER__PARALLELISM"] == "3"


# -- the event buffer ----------------------------------------------------------------------------------
def _offline_executor():
    """An executor that is never started: only its bookkeeping is exercised, no request is sent."""
    from kubernetes import client

    from crossdock.executors.kubernetes_executor import KubernetesExecutor

    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"
    return KubernetesExecutor(api_client=client.ApiClient(configuration))


def test_events_of_one_key_between_two_reads_are_all_delivered_in_order():
    from crossdock.models.taskinstancekey import TaskInstanceKey
    from crossdock.state import TaskInstanceState as S

    executor = _offline_executor()
    key, other = TaskInstanceKey("d", "t", "r", 1), TaskInstanceKey("d", "u", "r", 1)
    executor.running.update({key, other})
    executor.queued(key, "pod-a")
    executor.running_state(key, {"hostname": "pod-a"})
    executor.success(key)
    executor.fail(other, "boom")
    assert executor.get_event_buffer() == {key: (S.QUEUED, "pod-a"), other: (S.FAILED, "boom")}
    assert key in executor.running  # not final yet, as far as the scheduler has been told
    executor._release_deferred()
    assert executor.get_event_buffer() == {key: (S.RUNNING, {"hostname": "pod-a"})}
    executor._release_deferred()
    assert executor.get_event_buffer() == {key: (S.SUCCESS, None)}
    assert key not in executor.running and not executor._deferred


def test_end_delivers_the_final_state_of_held_back_events():
    from crossdock.models.taskinstancekey import TaskInstanceKey
    from crossdock.state import TaskInstanceState as S

    executor = _offline_executor()
    key = TaskInstanceKey("d", "t", "r", 1)
    executor.running.add(key)
    executor.running_state(key, {"hostname": "pod-a"})
    executor.success(key)
    executor.end()  # never started: sends nothing, but must not lose the outcome
    assert executor.get_event_buffer() == {key: (S.SUCCESS, None)}


def test_cli_commands_are_the_kubernetes_pod_subcommands():
    (group,) = _offline_executor().get_cli_commands()
    assert group.name == "kubernetes"
    assert [command.name for command in group.subcommands] == ["generate-dag-yaml", "cleanup-pods",
                                                               "local-runtime"]


def _followed_pod(executor, key, name="pod-a"):
    """A pod the executor follows; its API calls (log, delete) go to a closed port and fail."""
    from kubernetes import client

    from crossdock.executors.kubernetes_executor import PodRecord

    executor.core = client.CoreV1Api(executor.api_client)

    record = PodRecord(key=key, name=name, namespace="default", command=[], created=True, reported_running=True)
    executor._records[key] = record
    executor._by_pod[("default", name)] = key
    executor.running.add(key)


@pytest.mark.parametrize("kind, phase, extra, lost", [
    ("DELETED", "Running", {}, True),
    ("MODIFIED", "Running", {"deleting": True}, True),
    ("MODIFIED", "Failed", {"reason": "NodeLost", "message": "node n1 stopped reporting",
                            "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}, True),
    ("MODIFIED", "Failed", {"state": {"terminated": {"exitCode": 1, "reason": "Error"}}}, False),
])
def test_a_pod_lost_with_its_node_or_deleted_under_its_try_is_an_infrastructure_loss(kind, phase, extra, lost):
    from crossdock.executors.infrastructure_loss import is_infrastructure_loss
    from crossdock.kubernetes.kube_watcher import PodEvent
    from crossdock.models.taskinstancekey import TaskInstanceKey
    from crossdock.state import TaskInstanceState as S

    executor = _offline_executor()
    key = TaskInstanceKey("d", "t", "r", 1)
    _followed_pod(executor, key)
    executor._apply_pod_event(PodEvent(kind, pod=pod(phase, name="pod-a", **extra)))
    (event,) = executor.pop_task_events().values()
    assert event.state == S.FAILED and event.infrastructure_loss is lost
    executor.report_event(key, event)
    state, reason = executor.get_event_buffer()[key]
    assert state == S.FAILED and is_infrastructure_loss(reason) is lost and reason == event.reason
