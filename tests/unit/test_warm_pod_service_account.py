"""The service account a warm pod watches its own object as: ``[kubernetes_executor] warm_pod_service_account``.

Task pods need no API access (deploy/rbac.yaml gives them none); a warm pod must read and
watch its own pod object to see its one assignment, so it runs as a service account of its
own with its token mounted. The profile key stays the task pod's: warm pods of a profile are
still found for the tries of that profile.
"""

from __future__ import annotations

import pytest

from crossdock.configuration import ConfigError, conf
from crossdock.kubernetes.kube_config import KubeExecutorConfig
from crossdock.kubernetes.pod_generator import construct_pod
from crossdock.kubernetes.warm_profile import PROFILE_LABEL, profile_key, warm_pod_from
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import task_run_command

#: What deploy/pod_template.yaml gives every task pod.
NO_API = {"spec": {"serviceAccountName": "crossdock-worker", "automountServiceAccountToken": False}}


def task_pod(override=None):
    key = TaskInstanceKey("dag", "a", "run", 1, -1)
    return construct_pod(key=key, command=task_run_command(key, subdir="DAGS_FOLDER/dag.py"), scheduler_job_id=7,
                         pod_override=override, image="crossdock-worker:1", namespace="team")


def test_a_warm_pod_runs_as_the_configured_account_with_its_token_and_keeps_its_profile():
    pod = task_pod(NO_API)
    warm = warm_pod_from(pod, idle_seconds=30, worker_label="7", service_account="crossdock-warm-pod")
    assert warm["spec"]["serviceAccountName"] == "crossdock-warm-pod"
    assert warm["spec"]["automountServiceAccountToken"] is True
    assert warm["metadata"]["labels"][PROFILE_LABEL] == profile_key(pod)
    assert pod["spec"]["automountServiceAccountToken"] is False  # the task pod itself is untouched


def test_without_one_a_warm_pod_keeps_the_task_pod_s_own_account():
    warm = warm_pod_from(task_pod(NO_API), idle_seconds=30, worker_label="7", service_account="")
    assert warm["spec"]["serviceAccountName"] == "crossdock-worker"
    assert warm["spec"]["automountServiceAccountToken"] is False


def test_the_option_defaults_to_the_account_deploy_rbac_defines_and_may_be_emptied(monkeypatch):
    assert KubeExecutorConfig.from_conf().warm_pod_service_account == "crossdock-warm-pod"
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__WARM_POD_SERVICE_ACCOUNT", "")
    conf.reload()
    assert KubeExecutorConfig.from_conf().warm_pod_service_account == ""


@pytest.mark.parametrize("value", ["Warm_Pods", "warm pod", "-warm", "a" * 254])
def test_a_name_the_api_server_would_refuse_is_a_config_error_naming_the_option(monkeypatch, value):
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__WARM_POD_SERVICE_ACCOUNT", value)
    conf.reload()
    with pytest.raises(ConfigError) as caught:
        KubeExecutorConfig.from_conf()
    assert "[kubernetes_executor] warm_pod_service_account must be a service account name" in str(caught.value)
    assert "\n" not in str(caught.value)
