"""The ``deploy/`` kustomize base, alone and in an overlay with the generated worker Deployments.

Rendered by the real ``kubectl kustomize`` (Debian's kubernetes-client) and judged by
kubernetes-validate; whether a real API server accepts the result is checked in
``tests/integration/test_kubernetes_autoscaling.py``.
"""

from __future__ import annotations

import configparser
import io
import os
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from crossdock.cli.main import main
from crossdock.config_schema import KUBERNETES_EXECUTOR
from crossdock.configuration import conf
from crossdock.monitoring.worker_queues import WorkerQueues

K8S_VERSION = "1.30"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def kustomize(folder: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        message = "needs kubectl (Debian package kubernetes-client) for 'kubectl kustomize'"
        if os.environ.get("CROSSDOCK_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def write_overlay(folder: Path, *, extra: str = "") -> Path:
    """An overlay of the base: the workers ``crossdock deploy workers`` prints for deploy/crossdock.cfg."""
    folder.mkdir()
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["deploy", "workers"]) == 0
    (folder / "workers.yaml").write_text(out.getvalue())
    base = os.path.relpath(DEPLOY, folder)  # kustomize takes relative paths only
    (folder / "kustomization.yaml").write_text(
        f"resources: [{base}, workers.yaml]\ncomponents: [{base}/autoscaler]\n{extra}")
    return folder


@pytest.fixture
def deploy_config(monkeypatch):
    monkeypatch.setenv("CROSSDOCK_CONFIG", str(DEPLOY / "crossdock.cfg"))
    conf.reload()


def by_kind(documents: list[dict]) -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}


def test_the_base_renders_and_every_object_is_valid():
    documents = kustomize(DEPLOY)
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    objects = by_kind(documents)
    assert set(objects) == {
        ("ServiceAccount", "crossdock-scheduler"), ("ServiceAccount", "crossdock-worker"),
        ("Role", "crossdock-pod-launcher"), ("RoleBinding", "crossdock-pod-launcher"),
        ("ServiceAccount", "crossdock-warm-pod"), ("Role", "crossdock-warm-pod-watcher"),
        ("RoleBinding", "crossdock-warm-pod-watcher"),
        ("ConfigMap", "crossdock-config"), ("Deployment", "crossdock-scheduler"),
        ("Service", "crossdock-scheduler-metrics")}
    service = objects["Service", "crossdock-scheduler-metrics"]
    scheduler = objects["Deployment", "crossdock-scheduler"]
    assert service["spec"]["selector"] == scheduler["spec"]["selector"]["matchLabels"]
    [container] = scheduler["spec"]["template"]["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 9464} in container["ports"]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_the_config_map_holds_a_config_crossdock_reads_and_the_pod_template():
    config_map = by_kind(kustomize(DEPLOY))["ConfigMap", "crossdock-config"]
    assert sorted(config_map["data"]) == ["crossdock.cfg", "pod_template.yaml"]
    parsed = configparser.ConfigParser()
    parsed.read_string(config_map["data"]["crossdock.cfg"])
    assert parsed["kubernetes_executor"]["pod_template_file"] == "/etc/crossdock/pod_template.yaml"
    for section, key in (("database", "sql_alchemy_conn"), ("celery", "broker_url"), ("celery", "result_backend")):
        assert not parsed.has_option(section, key)  # those come from the Secret
    assert yaml.safe_load(config_map["data"]["pod_template.yaml"])["kind"] == "Pod"


def test_no_secret_is_defined_only_referenced(tmp_path, deploy_config):
    documents = kustomize(write_overlay(tmp_path / "overlay"))
    assert not [doc for doc in documents if doc["kind"] == "Secret"]
    refs = []
    for doc in documents:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            assert all("value" not in e or "://" not in e["value"] for e in env.values())
            refs += [e["valueFrom"]["secretKeyRef"]["name"] for e in env.values()
                     if "secretKeyRef" in e.get("valueFrom", {})]
            if doc["metadata"]["name"].startswith("crossdock-worker-"):
                assert "CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN" not in env  # workers never get the database
    assert refs and set(refs) == {"crossdock-secrets"}


def test_an_overlay_with_the_workers_and_the_autoscaler_renders_valid_objects(tmp_path, deploy_config):
    overlay = write_overlay(tmp_path / "overlay", extra=(
        "namespace: crossdock-prod\n"
        "images:\n  - name: crossdock-worker\n    newName: registry.example/crossdock\n    newTag: '1.0'\n"))
    documents = kustomize(overlay)
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
        assert document["metadata"]["namespace"] == "crossdock-prod"
    objects = by_kind(documents)
    workers = [doc for (kind, name), doc in objects.items()
               if kind == "Deployment" and name.startswith("crossdock-worker-")]
    assert len(workers) == len(WorkerQueues.from_config().names()) >= 1
    images = {c["image"] for doc in objects.values() if doc["kind"] == "Deployment"
              for c in doc["spec"]["template"]["spec"]["containers"]}
    assert images == {"registry.example/crossdock:1.0"}
    autoscaler = objects["Deployment", "crossdock-autoscaler"]
    assert autoscaler["spec"]["replicas"] == 1 and autoscaler["spec"]["strategy"]["type"] == "Recreate"
    assert autoscaler["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "crossdock", "celery", "autoscaler"]
    assert autoscaler["spec"]["template"]["spec"]["serviceAccountName"] == "crossdock-autoscaler"


def test_the_autoscaler_may_scale_deployments_and_annotate_pods_in_its_namespace_only(tmp_path, deploy_config):
    objects = by_kind(kustomize(write_overlay(tmp_path / "overlay")))
    assert not [key for key in objects if key[0].startswith("Cluster")]
    role = objects["Role", "crossdock-worker-scaler"]
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): sorted(r["verbs"]) for r in role["rules"]}
    assert rules == {(("apps",), ("deployments/scale",)): ["get", "patch", "update"],
                     (("",), ("pods",)): ["list", "patch"]}
    binding = objects["RoleBinding", "crossdock-worker-scaler"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "crossdock-worker-scaler"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "crossdock-autoscaler"}]


def test_a_warm_pod_may_only_read_and_watch_pods_as_the_account_the_executor_names():
    objects = by_kind(kustomize(DEPLOY))
    account = KUBERNETES_EXECUTOR["warm_pod_service_account"].default
    assert objects["ServiceAccount", account]["automountServiceAccountToken"] is True
    role = objects["Role", "crossdock-warm-pod-watcher"]
    assert [(r["apiGroups"], r["resources"], sorted(r["verbs"])) for r in role["rules"]] == [
        ([""], ["pods"], ["get", "list", "watch"])]
    binding = objects["RoleBinding", "crossdock-warm-pod-watcher"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "crossdock-warm-pod-watcher"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    # task pods keep no API access at all
    assert objects["ServiceAccount", "crossdock-worker"]["automountServiceAccountToken"] is False
