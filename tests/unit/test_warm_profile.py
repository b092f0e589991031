"""Warm pod profiles: which tries may share a warm pod, the warm pod built from a try's pod, the assignment."""

from __future__ import annotations

import json

from crossdock.kubernetes.pod_generator import construct_pod
from crossdock.kubernetes.warm_profile import (
    ASSIGNMENT_ANNOTATION, PROFILE_LABEL, WARM_COMMAND, WARM_LABEL, assignment_of, assignment_patch, is_warm,
    profile_key, warm_pod_from,
)
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import task_run_command

IMAGE = "crossdock-worker:1"


def pod_of(task_id, *, override=None, try_number=1, template=None):
    key = TaskInstanceKey("dag", task_id, "run", try_number, -1)
    return construct_pod(key=key, command=task_run_command(key, subdir="DAGS_FOLDER/dag.py"), scheduler_job_id=7,
                         pod_override=override, image=IMAGE, namespace="team", template=template)


def resources(cpu):
    return {"spec": {"containers": [{"name": "base", "resources": {"requests": {"cpu": cpu}}}]}}


def test_tries_that_differ_only_in_their_own_parts_share_a_profile():
    a, b = pod_of("a"), pod_of("b", try_number=3)
    assert a["metadata"]["name"] != b["metadata"]["name"] and a["spec"]["containers"][0]["args"] != \
        b["spec"]["containers"][0]["args"]
    assert profile_key(a) == profile_key(b)


def test_any_difference_in_the_pod_gives_another_profile():
    plain = profile_key(pod_of("a"))
    variants = [
        resources("500m"), {"spec": {"nodeSelector": {"disk": "ssd"}}}, {"spec": {"serviceAccountName": "etl"}},
        {"spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}},
        {"spec": {"containers": [{"name": "base", "env": [{"name": "MODE", "value": "x"}]}]}},
        {"spec": {"containers": [{"name": "base", "image": "other:2"}]}},
        {"metadata": {"labels": {"team": "data"}}}, {"metadata": {"namespace": "elsewhere"}},
        {"spec": {"volumes": [{"name": "cache", "emptyDir": {}}]}},
    ]
    keys = [profile_key(pod_of("a", override=override)) for override in variants]
    assert plain not in keys and len(set(keys)) == len(keys)
    assert profile_key(pod_of("a", override=resources("500m"))) != profile_key(pod_of("b", override=resources("1")))


def test_warm_pod_keeps_the_profile_and_runs_the_warm_entry_point():
    task_pod = pod_of("a", override=resources("250m"))
    warm = warm_pod_from(task_pod, idle_seconds=30, worker_label="7")
    labels = warm["metadata"]["labels"]
    assert labels[WARM_LABEL] == "true" and labels[PROFILE_LABEL] == profile_key(task_pod)
    assert "task_id" not in labels and not any(k.startswith("crossdock.io/dag") for k in warm["metadata"]["annotations"])
    assert is_warm(warm) and not is_warm(task_pod)
    base = warm["spec"]["containers"][0]
    assert [base["command"][0], *base["args"]] == list(WARM_COMMAND)
    assert base["resources"] == {"requests": {"cpu": "250m"}} and base["image"] == IMAGE
    env = {item["name"]: item for item in base["env"]}
    assert env["CROSSDOCK_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["CROSSDOCK_WARM_IDLE_SECONDS"]["value"] == "30"
    # a template with an entrypoint keeps it; the warm command becomes its args
    wrapped = warm_pod_from(task_pod, idle_seconds=30, worker_label="7", entrypoint=["tini", "--"])
    assert wrapped["spec"]["containers"][0]["command"] == ["tini", "--"]
    assert wrapped["spec"]["containers"][0]["args"] == list(WARM_COMMAND)


def test_assignment_carries_the_try_the_command_and_the_version_precondition():
    key = TaskInstanceKey("dag", "a", "run", 2, -1)
    command = task_run_command(key, subdir="DAGS_FOLDER/dag.py")
    patch = assignment_patch(key=key, command=command, resource_version="41")
    meta = patch["metadata"]
    assert meta["resourceVersion"] == "41" and meta["labels"]["task_id"] == "a"
    assert meta["annotations"]["crossdock.io/try_number"] == "2"
    assert assignment_of(patch) == command


def test_a_malformed_assignment_is_no_assignment():
    for raw in ("", "not json", json.dumps("crossdock tasks run"), json.dumps([]), json.dumps(["a", 1])):
        assert assignment_of({"metadata": {"annotations": {ASSIGNMENT_ANNOTATION: raw}}}) is None
    assert assignment_of({"metadata": {}}) is None
