"""``crossdock kubernetes generate-dag-yaml``: one valid pod manifest per task, judged by kubernetes-validate."""

from __future__ import annotations

import argparse
import textwrap

import kubernetes_validate
import pytest
import yaml

from crossdock import database
from crossdock.cli.errors import CliError
from crossdock.cli.kubernetes_pods_command import generate_dag_yaml
from crossdock.configuration import conf

#: The Kubernetes version the manifests are checked against (strict: unknown fields are errors).
K8S_VERSION = "1.30"

DAG_SOURCE = """
    from kubernetes.client import models as k8s
    from crossdock import DAG, BashOperator

    as_model = {"pod_override": k8s.V1Pod(spec=k8s.V1PodSpec(
        containers=[k8s.V1Container(name="base", resources=k8s.V1ResourceRequirements(
            requests={"cpu": "500m", "memory": "1024Mi"}, limits={"cpu": "500m", "memory": "1024Mi"}))],
    ))}
    as_dict = {"pod_override": {"spec": {"containers": [
        {"name": "base", "image": "my-special-image:latest",
         "resources": {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}},
        {"name": "sidecar", "image": "proxy:1"}]}}}

    with DAG("pods") as dag:
        BashOperator(task_id="plain", bash_command="true", queue="kubernetes")
        BashOperator(task_id="model", bash_command="true", queue="kubernetes", executor_config=as_model)
        BashOperator(task_id="dict", bash_command="true", queue="kubernetes", executor_config=as_dict)
"""


@pytest.fixture
def dags_folder(dags_folder):
    database.migrate()
    return dags_folder


def run(dag_id, output):
    return generate_dag_yaml(argparse.Namespace(dag_id=dag_id, output_path=str(output), run_id="manual__1"))


def test_every_task_gets_a_pod_manifest_that_kubernetes_validate_accepts(dags_folder, tmp_path, capsys):
    (dags_folder / "pods.py").write_text(textwrap.dedent(DAG_SOURCE))
    assert run("pods", tmp_path / "out") == 0
    files = sorted((tmp_path / "out" / "pods").glob("*.yaml"))
    assert [f.name for f in files] == ["dict.yaml", "model.yaml", "plain.yaml"]
    pods = {}
    for path in files:
        pod = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)  # raises on any schema error
        pods[path.stem] = pod
    assert "3 pod manifest(s)" in capsys.readouterr().out
    plain_base = pods["plain"]["spec"]["containers"][0]
    assert plain_base["command"] + plain_base["args"] == [
        "crossdock", "tasks", "run", "pods", "plain", "manual__1", "--try-number", "1",
        "--subdir", "DAGS_FOLDER/pods.py"]
    assert plain_base["image"] == "crossdock-worker:latest"
    model_base = pods["model"]["spec"]["containers"][0]
    assert model_base["resources"]["limits"] == {"cpu": "500m", "memory": "1024Mi"}
    assert [c["name"] for c in pods["dict"]["spec"]["containers"]] == ["base", "sidecar"]
    assert pods["dict"]["spec"]["containers"][0]["image"] == "my-special-image:latest"


def test_an_invalid_manifest_is_caught_by_the_same_check():
    """The check above is not vacuous: a pod with a misspelt field fails it."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [{"name": "base", "image": "x:1", "comand": ["true"]}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_a_bad_pod_override_is_reported_with_the_task_and_field(dags_folder, tmp_path):
    (dags_folder / "bad.py").write_text(textwrap.dedent("""
        from crossdock import DAG, BashOperator
        with DAG("bad") as dag:
            BashOperator(task_id="oops", bash_command="true",
                         executor_config={"pod_override": {"spec": {"containers": [{"nmae": "base"}]}}})
    """))
    with pytest.raises(CliError, match=r"DAG 'bad' failed to import: .*task 'oops': invalid "
                                       r"pod_override.spec.containers\[0\] has unknown field 'nmae'"):
        run("bad", tmp_path / "out")


def test_an_unknown_dag_is_a_readable_error(dags_folder, tmp_path):
    with pytest.raises(CliError, match="DAG 'nope' not found"):
        run("nope", tmp_path / "out")


DEPLOY = __import__("pathlib").Path(__file__).resolve().parents[2] / "deploy"


def test_deploy_manifests_are_valid_kubernetes_objects():
    for name in ("rbac.yaml", "pod_template.yaml"):
        for document in yaml.safe_load_all((DEPLOY / name).read_text()):
            kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_deploy_pod_template_works_as_the_pod_template_file(dags_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE", str(DEPLOY / "pod_template.yaml"))
    conf.reload()
    (dags_folder / "pods.py").write_text(textwrap.dedent(DAG_SOURCE))
    run("pods", tmp_path / "out")
    pod = yaml.safe_load((tmp_path / "out" / "pods" / "model.yaml").read_text())
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert pod["spec"]["serviceAccountName"] == "crossdock-worker"
    base = pod["spec"]["containers"][0]
    assert base["resources"] == {"requests": {"cpu": "500m", "memory": "1024Mi"},
                                 "limits": {"memory": "1024Mi", "cpu": "500m"}}
