"""A warm pod's light reader of its own pod object (urllib3, not the official client), against
the local pod runtime and the real kube-apiserver, with each server's own kubeconfig."""

from __future__ import annotations

import base64
import threading

import pytest
import yaml
from kubernetes import client, config

from crossdock.kubernetes.local_runtime import start_local_runtime
from crossdock.kubernetes.local_runtime.tls import ensure_self_signed
from crossdock.runner.own_pod_api import UnsupportedCredentials, own_pod_api
from crossdock.runner.warm_pod import wait_for_assignment

from kube_executor_support import new_namespace, require_real_kubeconfig


@pytest.fixture(scope="module")
def local_kubeconfig(tmp_path_factory):
    runtime = start_local_runtime(state_dir=tmp_path_factory.mktemp("own-pod-runtime"), with_agent=False)
    yield str(runtime.kubeconfig_path)
    runtime.stop()


@pytest.fixture(params=["local", "real"])
def kubeconfig(request):
    if request.param == "real":
        return require_real_kubeconfig()
    return request.getfixturevalue("local_kubeconfig")


def test_it_reads_its_pod_and_sees_the_assignment_patched_onto_it(kubeconfig):
    api_client = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api_client)
    namespace = new_namespace(lambda: api_client)
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "me"},
        "spec": {"containers": [{"name": "base", "image": "crossdock/test:1"}]}})
    api = own_pod_api(name="me", namespace=namespace, in_cluster=False, config_file=kubeconfig, cluster_context="")
    pod, version = api.get()
    assert pod["metadata"]["name"] == "me" and version
    watching = threading.Event()

    def assign():
        watching.wait(10)
        core.patch_namespaced_pod("me", namespace, {"metadata": {"annotations": {
            "crossdock.io/assignment": '["crossdock", "tasks", "run", "d", "t", "r"]'}}})

    patcher = threading.Thread(target=assign)
    patcher.start()
    try:
        command = wait_for_assignment(api, idle_seconds=20, on_watching=watching.set)
    finally:
        patcher.join()
        api.close()
        core.delete_namespaced_pod("me", namespace, grace_period_seconds=0)
    assert command == ["crossdock", "tasks", "run", "d", "t", "r"]


def test_kubeconfig_users_it_cannot_serve_are_left_to_the_official_client(tmp_path, local_kubeconfig):
    document = yaml.safe_load(open(local_kubeconfig))
    document["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x"}}
    exec_config = tmp_path / "exec.yaml"
    exec_config.write_text(yaml.safe_dump(document))
    with pytest.raises(UnsupportedCredentials):
        own_pod_api(name="me", namespace="default", in_cluster=False, config_file=str(exec_config),
                    cluster_context="")
    # a client certificate (with its key) is one it serves
    cert, key = ensure_self_signed(tmp_path / "pki", name="client")
    document["users"][0]["user"] = {"client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
                                    "client-key": str(key)}
    cert_config = tmp_path / "cert.yaml"
    cert_config.write_text(yaml.safe_dump(document))
    own_pod_api(name="me", namespace="default", in_cluster=False, config_file=str(cert_config),
                cluster_context="").close()
