"""What the local pods API accepts, defaults and refuses, in the real server's words."""

from __future__ import annotations

import copy

import pytest

from crossdock.kubernetes.local_runtime.errors import ApiError
from crossdock.kubernetes.local_runtime.patch import apply_patch, json_patch, merge_patch, strategic_merge_patch
from crossdock.kubernetes.local_runtime.validation import default_pod, prune_object, qos_class, validate_pod


def _pod(**spec) -> dict:
    body = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "base", "image": "x:1"}], **spec}}
    return default_pod(body)


def test_unknown_fields_are_pruned_at_every_depth_and_known_ones_kept() -> None:
    body = {"metadata": {"name": "p", "labels": {"a": "b"}, "bogus": 1}, "bogusTop": True,
            "spec": {"containers": [{"name": "base", "image": "x", "nope": 2,
                                     "resources": {"limits": {"memory": "1Gi"}}}], "alsoNope": {}}}
    pruned = prune_object("Pod", body)
    assert pruned == {"metadata": {"name": "p", "labels": {"a": "b"}},
                      "spec": {"containers": [{"name": "base", "image": "x",
                                               "resources": {"limits": {"memory": "1Gi"}}}]}}


def test_defaults_match_the_real_server() -> None:
    pod = _pod()
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert spec["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert default_pod({"spec": {"containers": [{"name": "c", "image": "busybox"}]}})["spec"]["containers"][0][
        "imagePullPolicy"] == "Always"


def test_requests_default_to_limits_and_qos_follows() -> None:
    limited = _pod()
    limited["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}}
    default_pod(limited)
    assert limited["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert qos_class(limited) == "Guaranteed"
    assert qos_class(_pod()) == "BestEffort"


def test_every_problem_is_one_cause_and_the_message_lists_them() -> None:
    body = default_pod({"metadata": {"name": "Bad_Name"}, "spec": {"containers": []}})
    with pytest.raises(ApiError) as info:
        validate_pod(body)
    status = info.value.status()
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert [c["field"] for c in status["details"]["causes"]] == ["metadata.name", "spec.containers"]
    assert status["message"].startswith('Pod "Bad_Name" is invalid: [metadata.name: Invalid value: "Bad_Name"')


def test_container_problems_name_the_container_index() -> None:
    body = default_pod({"metadata": {"name": "ok"}, "spec": {"containers": [
        {"name": "base", "image": "x"}, {"name": "base"}, {"name": "Upper", "image": "x"}]}})
    with pytest.raises(ApiError) as info:
        validate_pod(body)
    causes = [(c["field"], c["reason"]) for c in info.value.status()["details"]["causes"]]
    assert causes == [("spec.containers[1].name", "FieldValueDuplicate"),
                      ("spec.containers[1].image", "FieldValueRequired"),
                      ("spec.containers[2].name", "FieldValueInvalid")]


def test_bad_restart_policy_and_deadline_are_refused() -> None:
    with pytest.raises(ApiError) as info:
        validate_pod(_pod(restartPolicy="Sometimes", activeDeadlineSeconds=0))
    fields = [c["field"] for c in info.value.status()["details"]["causes"]]
    assert fields == ["spec.restartPolicy", "spec.activeDeadlineSeconds"]


def test_merge_patch_deletes_with_null_and_replaces_lists() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    assert merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3]}) == {"a": {"c": 2, "d": 3}, "l": [3]}
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2]}  # the input is left alone


def test_strategic_merge_merges_keyed_lists_by_their_key() -> None:
    status = {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}
    patched = strategic_merge_patch(status, {"conditions": [{"type": "Ready", "status": "True"},
                                                            {"type": "Initialized", "status": "True"}]})
    assert patched["conditions"] == [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"},
                                     {"type": "Initialized", "status": "True"}]
    removed = strategic_merge_patch(status, {"conditions": [{"type": "Ready", "$patch": "delete"}]})
    assert removed["conditions"] == [{"type": "PodScheduled", "status": "True"}]


def test_json_patch_and_unknown_patch_types() -> None:
    doc = {"metadata": {"labels": {"a": "1"}}}
    patched = json_patch(doc, [{"op": "replace", "path": "/metadata/labels/a", "value": "2"},
                               {"op": "add", "path": "/metadata/labels/b~1c", "value": "3"}])
    assert patched["metadata"]["labels"] == {"a": "2", "b/c": "3"}
    with pytest.raises(ApiError) as info:
        json_patch(doc, [{"op": "test", "path": "/metadata/labels/a", "value": "9"}])
    assert info.value.code == 422
    with pytest.raises(ApiError) as info:
        apply_patch("application/xml", copy.deepcopy(doc), {})
    assert info.value.code == 415
