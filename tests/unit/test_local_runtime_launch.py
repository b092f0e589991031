"""From pod spec to local process: argv, env, limits, and the refusals a kubelet would give."""

from __future__ import annotations

import pytest

from crossdock.kubernetes.local_runtime.launch import (
    ContainerConfigError, ImagePullError, build_plan, expand, memory_limit, nice_for, pick_container,
)


def _pod(container: dict, **meta) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}, **meta},
            "spec": {"nodeName": "n1", "containers": [{"name": "base", "image": "img:1", **container}]}}


def _plan(pod: dict, sources: dict | None = None, reject=()):
    sources = sources or {}
    return build_plan(pod, pick_container(pod), reject_patterns=list(reject), log_path="/dev/null",
                      read_source=lambda kind, ns, name: sources.get((kind, name)))


def test_base_container_is_picked_over_the_first() -> None:
    pod = {"spec": {"containers": [{"name": "sidecar"}, {"name": "base"}]}}
    assert pick_container(pod)["name"] == "base"
    assert pick_container({"spec": {"containers": [{"name": "only"}]}})["name"] == "only"


def test_command_args_and_variable_expansion() -> None:
    plan = _plan(_pod({"command": ["echo", "$(GREETING)"], "args": ["$(MISSING)", "$$(GREETING)"],
                       "env": [{"name": "GREETING", "value": "hi"}, {"name": "TWICE", "value": "$(GREETING)$(GREETING)"}]}))
    assert plan.argv == ["echo", "hi", "$(MISSING)", "$(GREETING)"]
    assert plan.env["TWICE"] == "hihi"
    assert plan.env["HOSTNAME"] == "p"
    assert expand("$(A)-$(B)", {"A": "1"}) == "1-$(B)"


def test_field_resource_config_map_and_secret_references() -> None:
    pod = _pod({"command": ["true"], "resources": {"limits": {"memory": "128Mi", "cpu": "250m"}}, "env": [
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
        {"name": "SEC", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
        {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": True}}},
    ]})
    plan = _plan(pod, {("ConfigMap", "cfg"): {"k": "v"}, ("Secret", "sec"): {"token": "t0k"}})
    assert {k: plan.env[k] for k in ("NS", "APP", "NODE", "MEM_MI", "CM", "SEC")} == {
        "NS": "ns", "APP": "x", "NODE": "n1", "MEM_MI": "128", "CM": "v", "SEC": "t0k"}
    assert "OPT" not in plan.env
    assert plan.memory_limit_bytes == 128 * 1024 * 1024
    assert plan.nice > 0


@pytest.mark.parametrize("container,message", [
    ({}, 'container "base" has no command'),
    ({"command": ["true"], "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]},
     'secret "gone" not found'),
    ({"command": ["true"], "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}}]},
     "couldn't find key k in Secret ns/sec"),
    ({"command": ["true"], "env": [{"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}]},
     'unsupported fieldRef fieldPath "spec.hostname"'),
    ({"command": ["true"], "env": [{"name": "X", "valueFrom": {"somethingNew": {}}}]},
     'env "X": valueFrom source somethingNew is not supported by the local runtime'),
    ({"command": ["true"], "volumeDevices": [{"name": "v", "devicePath": "/dev/xvda"}]},
     "volumeDevices not supported by the local runtime"),
])
def test_what_cannot_run_here_is_a_config_error_saying_why(container: dict, message: str) -> None:
    with pytest.raises(ContainerConfigError) as info:
        _plan(_pod(container), {("Secret", "sec"): {"other": "1"}})
    assert message in str(info.value)


def test_rejected_images_are_pull_errors() -> None:
    with pytest.raises(ImagePullError) as info:
        _plan(_pod({"command": ["true"], "image": "repo/app:does-not-exist"}), reject=["*:does-not-exist"])
    assert 'Failed to pull image "repo/app:does-not-exist"' in str(info.value)
    assert _plan(_pod({"command": ["true"], "image": "repo/app:1"}), reject=["*:does-not-exist"]).argv == ["true"]


def test_limits_map_to_bytes_and_niceness() -> None:
    assert memory_limit({"resources": {"limits": {"memory": "1Gi"}}}) == 1 << 30
    assert memory_limit({"resources": {}}) is None
    assert nice_for({"resources": {"limits": {"cpu": "2"}}}) == 0
    assert nice_for({"resources": {"limits": {"cpu": "100m"}}}) == 9
