"""Pod construction: template + pod_override + task command, and the label/name rules."""

from __future__ import annotations

import re

import pytest
from kubernetes.client import models as k8s

from crossdock.kubernetes.pod_generator import (
    ANNOTATION_PREFIX,
    DEFAULT_POD_TEMPLATE,
    EXECUTOR_LABEL,
    WORKER_LABEL,
    PodOverrideError,
    annotations_to_key,
    construct_pod,
    load_pod_template,
    make_pod_name,
    make_safe_label_value,
    merge_pods,
    normalize_pod,
)
from crossdock.models.taskinstancekey import TaskInstanceKey

KEY = TaskInstanceKey("my_dag", "my_task", "manual__2024-01-01T00:00:00+00:00", 2, -1)
COMMAND = ["crossdock", "tasks", "run", "my_dag", "my_task", KEY.run_id, "--try-number", "2",
           "--subdir", "DAGS_FOLDER/my_dag.py"]
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def build(**kwargs):
    kwargs.setdefault("key", KEY)
    kwargs.setdefault("command", COMMAND)
    kwargs.setdefault("scheduler_job_id", 7)
    kwargs.setdefault("image", "crossdock-worker:latest")
    return construct_pod(**kwargs)


def base_of(pod):
    return next(c for c in pod["spec"]["containers"] if c["name"] == "base")


TEMPLATE = {
    "metadata": {"labels": {"team": "data"}, "annotations": {"owner": "ops"}},
    "spec": {
        "serviceAccountName": "crossdock-worker",
        "containers": [{
            "name": "base",
            "image": "template-image:1",
            "env": [{"name": "FROM_TEMPLATE", "value": "1"}, {"name": "SHARED", "value": "template"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}],
        }],
        "volumes": [{"name": "config", "configMap": {"name": "crossdock-config"}}],
        "initContainers": [{"name": "wait-db", "image": "busybox", "command": ["true"]}],
    },
}


# -- the executor's own fields ---------------------------------------------------------------------
def test_default_pod_runs_exactly_the_task_command_in_base_with_configured_image_and_namespace():
    pod = build(namespace="workers")
    base = base_of(pod)
    assert base["command"] + base["args"] == COMMAND
    assert base["image"] == "crossdock-worker:latest"
    assert pod["metadata"]["namespace"] == "workers"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"


def test_a_template_entrypoint_is_kept_and_the_task_command_becomes_its_args():
    template = {"spec": {"containers": [{"name": "base", "image": "x:1", "command": ["/usr/bin/tini", "--"]}]}}
    base = base_of(build(template=template, image=None))
    assert base["command"] == ["/usr/bin/tini", "--"]
    assert base["args"] == COMMAND


def test_labels_are_label_safe_and_annotations_carry_the_raw_ids():
    pod = build()
    labels, annotations = pod["metadata"]["labels"], pod["metadata"]["annotations"]
    assert labels[WORKER_LABEL] == "7" and labels[EXECUTOR_LABEL] == "True"
    assert labels["dag_id"] == "my_dag" and labels["task_id"] == "my_task" and labels["try_number"] == "2"
    assert "map_index" not in labels  # only for mapped tasks
    assert labels["run_id"] != KEY.run_id and all(LABEL_VALUE.match(v) and len(v) <= 63 for v in labels.values())
    assert annotations[f"{ANNOTATION_PREFIX}run_id"] == KEY.run_id
    assert annotations_to_key(annotations) == KEY


def test_mapped_try_gets_a_map_index_label_and_round_trips_through_annotations():
    key = KEY._replace(map_index=3)
    pod = build(key=key)
    assert pod["metadata"]["labels"]["map_index"] == "3"
    assert annotations_to_key(pod["metadata"]["annotations"]) == key


def test_annotations_of_a_foreign_pod_map_to_no_key():
    assert annotations_to_key({"something": "else"}) is None
    assert annotations_to_key({f"{ANNOTATION_PREFIX}{n}": "x" for n in
                               ("dag_id", "task_id", "run_id", "try_number", "map_index")}) is None


def test_pod_name_is_dns_1123_at_most_63_chars_and_random():
    long_key = TaskInstanceKey("A" * 200 + "_Dag.With Spaces", "Task/With:Odd_Chars" * 10, "r", 1, -1)
    names = {build(key=long_key)["metadata"]["name"] for _ in range(20)}
    assert len(names) == 20  # random suffix
    for name in names:
        assert len(name) <= 63 and DNS_1123_LABEL.match(name), name
    assert make_pod_name("my_dag", "t", suffix="abc12345") == "my-dag-t-abc12345"
    assert make_pod_name("___", "...", suffix="abc12345") == "pod-abc12345"


@pytest.mark.parametrize("value", [
    "simple", "with spaces and/slashes", "manual__2024-01-01T00:00:00+00:00", "x" * 200, "_leading", "trailing-",
    "ünïcödé", "", "-", "a" * 63,
])
def test_make_safe_label_value_always_gives_a_valid_label(value):
    safe = make_safe_label_value(value)
    assert len(safe) <= 63 and LABEL_VALUE.match(safe), safe


def test_safe_label_value_keeps_valid_values_and_hashes_changed_ones_apart():
    assert make_safe_label_value("valid.value_1-2") == "valid.value_1-2"
    first, second = make_safe_label_value("a:b"), make_safe_label_value("a+b")
    assert first != second  # same cleaned text, different originals
    assert first.startswith("a_b-")
    assert make_safe_label_value("x" * 70) != make_safe_label_value("x" * 71)


# -- merge rules --------------------------------------------------------------------------------
def test_dict_override_merges_resources_key_by_key_and_keeps_the_template_requests():
    override = {"spec": {"containers": [{"name": "base", "resources": {"limits": {"memory": "1Gi", "cpu": "2"}}}]}}
    base = base_of(build(template=TEMPLATE, pod_override=override, image=None))
    assert base["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                 "limits": {"memory": "1Gi", "cpu": "2"}}
    assert base["image"] == "template-image:1"


def test_configured_image_replaces_the_template_image_and_override_image_wins():
    assert base_of(build(template=TEMPLATE))["image"] == "crossdock-worker:latest"
    override = {"spec": {"containers": [{"name": "base", "image": "my-special-image:latest"}]}}
    assert base_of(build(template=TEMPLATE, pod_override=override))["image"] == "my-special-image:latest"


def test_named_lists_are_appended_and_same_names_replace_in_place():
    override = {"spec": {
        "containers": [{"name": "base", "env": [{"name": "SHARED", "value": "override"},
                                                {"name": "EXTRA", "value": "2"}],
                        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "initContainers": [{"name": "prepare", "image": "busybox", "command": ["true"]}],
    }}
    pod = build(template=TEMPLATE, pod_override=override)
    base = base_of(pod)
    assert base["env"] == [{"name": "FROM_TEMPLATE", "value": "1"}, {"name": "SHARED", "value": "override"},
                           {"name": "EXTRA", "value": "2"}]
    assert [m["mountPath"] for m in base["volumeMounts"]] == ["/etc/config", "/cache"]
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["config", "cache"]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["wait-db", "prepare"]
    assert pod["spec"]["serviceAccountName"] == "crossdock-worker"


def test_other_containers_are_sidecars_and_labels_and_annotations_merge():
    override = {"metadata": {"labels": {"cost-center": "42"}, "annotations": {"note": "hi"}},
                "spec": {"containers": [{"name": "sidecar", "image": "proxy:1"}]}}
    pod = build(template=TEMPLATE, pod_override=override)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["base", "sidecar"]
    assert pod["metadata"]["labels"]["team"] == "data" and pod["metadata"]["labels"]["cost-center"] == "42"
    assert pod["metadata"]["annotations"]["owner"] == "ops" and pod["metadata"]["annotations"]["note"] == "hi"


def test_override_cannot_change_the_identity_labels_or_restart_policy():
    override = {"metadata": {"labels": {WORKER_LABEL: "99", "dag_id": "other"}, "name": "fixed"},
                "spec": {"restartPolicy": "Always"}}
    pod = build(pod_override=override)
    assert pod["metadata"]["labels"][WORKER_LABEL] == "7" and pod["metadata"]["labels"]["dag_id"] == "my_dag"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["name"] != "fixed"


def test_override_namespace_is_honoured():
    assert build(pod_override={"metadata": {"namespace": "special"}})["metadata"]["namespace"] == "special"


def test_v1pod_override_from_the_seed_gives_the_same_pod_as_the_dict_form():
    # The dict form writes cpu as a number, as Airflow users do; the client's models want strings.
    v1pod = k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(
        name="base",
        resources=k8s.V1ResourceRequirements(requests={"cpu": "0.5", "memory": "1024Mi"},
                                             limits={"cpu": "0.5", "memory": "1024Mi"}),
        volume_mounts=[k8s.V1VolumeMount(mount_path="/cache", name="cache-volume")],
    )], volumes=[k8s.V1Volume(name="cache-volume", empty_dir=k8s.V1EmptyDirVolumeSource())]))
    as_dict = {"spec": {"containers": [{"name": "base",
                                        "resources": {"requests": {"cpu": 0.5, "memory": "1024Mi"},
                                                      "limits": {"cpu": 0.5, "memory": "1024Mi"}},
                                        "volume_mounts": [{"mount_path": "/cache", "name": "cache-volume"}]}],
                        "volumes": [{"name": "cache-volume", "empty_dir": {}}]}}
    from_model = build(pod_override=v1pod, pod_name="p")
    from_dict = build(pod_override=as_dict, pod_name="p")
    assert from_model == from_dict
    base = base_of(from_model)
    assert base["resources"]["requests"] == {"cpu": "0.5", "memory": "1024Mi"}
    assert base["volumeMounts"] == [{"mountPath": "/cache", "name": "cache-volume"}]
    assert from_model["spec"]["volumes"] == [{"name": "cache-volume", "emptyDir": {}}]


def test_merge_does_not_change_its_inputs():
    template = normalize_pod(TEMPLATE)
    before = repr(template)
    merge_pods(template, {"spec": {"containers": [{"name": "base", "env": [{"name": "X", "value": "1"}]}]}})
    assert repr(template) == before


# -- bad overrides ------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ({"spec": {"contianers": []}}, "pod_override.spec has unknown field 'contianers'"),
    ({"specs": {}}, "pod_override has unknown field 'specs'"),
    ({"spec": {"containers": [{"image": "x"}]}}, "pod_override.spec.containers[0] has no name"),
    ({"spec": {"containers": {"name": "base"}}}, "pod_override.spec.containers must be a list"),
    ({"spec": {"containers": [{"name": "base", "env": [{"name": "A", "value": ["x"]}]}]}},
     "pod_override.spec.containers[0].env[0].value must be a string"),
    ({"spec": {"activeDeadlineSeconds": "soon"}}, "pod_override.spec.activeDeadlineSeconds must be an integer"),
    ({"kind": "Deployment"}, "pod_override.kind must be Pod"),
    ("not a pod", "pod_override must be a V1Pod or a dict"),
    (k8s.V1Container(name="base"), "pod_override must be a V1Pod or a dict, not a V1Container"),
])
def test_bad_override_fails_with_a_message_naming_the_field(override, message):
    with pytest.raises(PodOverrideError) as caught:
        build(pod_override=override)
    assert message in str(caught.value)


def test_a_base_container_without_an_image_is_refused_readably():
    with pytest.raises(PodOverrideError, match="container 'base' has no image"):
        build(image=None)


# -- template files -------------------------------------------------------------------------------------
def test_template_file_is_loaded_and_checked(tmp_path):
    path = tmp_path / "pod.yaml"
    path.write_text("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: base\n    image: t:1\n"
                    "    imagePullPolicy: IfNotPresent\n")
    template = load_pod_template(str(path))
    assert base_of(build(template=template, image=None))["imagePullPolicy"] == "IfNotPresent"
    assert load_pod_template("") == DEFAULT_POD_TEMPLATE


@pytest.mark.parametrize("content, message", [
    ("spec: [unclosed", "is not valid YAML"),
    ("spec:\n  containerz: []\n", "unknown field 'containerz'"),
    ("metadata: {}\n", "has no containers"),
])
def test_broken_template_file_fails_with_its_path(tmp_path, content, message):
    path = tmp_path / "pod.yaml"
    path.write_text(content)
    with pytest.raises(PodOverrideError, match=message) as caught:
        load_pod_template(str(path))
    assert str(path) in str(caught.value)


def test_missing_template_file_is_named():
    with pytest.raises(PodOverrideError, match="cannot read pod template file /nonexistent/pod.yaml"):
        load_pod_template("/nonexistent/pod.yaml")
