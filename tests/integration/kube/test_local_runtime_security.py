"""The local runtime's listeners authenticate, its state is owner-only, and pods get only their own environment.

Whoever can reach the pods API can start processes on this machine, so every request but
a health probe needs the bearer token the runtime's kubeconfig carries; the node agent's
endpoint (logs, stats, fault hooks) likewise. Refusals are a kube-apiserver's 401 Status.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from crossdock.kubernetes.local_runtime import start_local_runtime
from crossdock.kubernetes.local_runtime.hook_client import agent_request, runtime_request

UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
KUBECTL = shutil.which("kubectl")
WAIT_LIMIT = 30.0


def _https(url: str, *, ca: Path | None, token: str | None = None, method: str = "GET",
           body: dict | None = None) -> tuple[int, object]:
    """A request as curl would send it: nothing of the official client, a token only if given."""
    context = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def _wait_phase(core: client.CoreV1Api, name: str, *phases: str) -> client.V1Pod:
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        pod = core.read_namespaced_pod(name, "default")
        if pod.status.phase in phases:
            return pod
        assert time.monotonic() < deadline, f"{name} stuck in {pod.status.phase}"
        time.sleep(0.05)


def _pod(name: str, command: list[str], **container) -> dict:
    return {"metadata": {"name": name}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "base", "image": "crossdock/test:1", "command": command, **container}]}}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def kube_client(local_runtime) -> client.ApiClient:
    """The official client configured the user's way: from the runtime's kubeconfig."""
    return config.new_client_from_config(config_file=str(local_runtime.kubeconfig_path))


# -- the pods API ---------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_pods_api_refuses_requests_without_the_right_token(local_runtime, token, tmp_path) -> None:
    marker = tmp_path / "ran"
    base, ca = local_runtime.url, local_runtime.ca_cert
    attempts = [
        ("POST", "/api/v1/namespaces/default/pods", _pod("intruder", ["/bin/sh", "-c", f"id > {marker}"])),
        ("GET", "/api/v1/namespaces/default/pods", None),
        ("GET", "/api/v1/pods?watch=true", None),
        ("GET", "/api", None),
        ("GET", "/version", None),
        ("GET", "/_crossdock/stats", None),
        ("POST", "/_crossdock/faults/fail-next", {"count": 100}),
    ]
    for method, path, body in attempts:
        assert _https(base + path, ca=ca, token=token, method=method, body=body) == (401, UNAUTHORIZED), path
    # nothing was created, nothing ran, no fault was armed
    core = client.CoreV1Api(local_runtime.api_client())
    assert core.list_namespaced_pod("default").items == []
    assert local_runtime.api.faults.describe() == {"failNext": []}
    assert not marker.exists()


def test_the_token_of_the_kubeconfig_is_accepted_and_health_probes_are_open(local_runtime) -> None:
    document = yaml.safe_load(local_runtime.kubeconfig_path.read_text())
    token = document["users"][0]["user"]["token"]
    assert token == local_runtime.token and len(token) >= 32
    assert document["clusters"][0]["cluster"]["server"].startswith("https://")
    status, pods = _https(local_runtime.url + "/api/v1/namespaces/default/pods", ca=local_runtime.ca_cert,
                          token=token)
    assert status == 200 and pods["kind"] == "PodList"
    assert _https(local_runtime.url + "/healthz", ca=local_runtime.ca_cert) == (200, "ok")
    # a wrong token is refused even where none is needed, as a real server does
    assert _https(local_runtime.url + "/healthz", ca=local_runtime.ca_cert, token="nope") == (401, UNAUTHORIZED)


def test_official_client_works_with_the_kubeconfig_and_fails_unauthorized_without_it(
        local_runtime, kube_client) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod("default", _pod("allowed", ["true"]))
    assert _wait_phase(core, "allowed", "Succeeded", "Failed").status.phase == "Succeeded"
    anonymous = client.Configuration()
    anonymous.host = local_runtime.url
    anonymous.ssl_ca_cert = str(local_runtime.ca_cert)
    with pytest.raises(client.ApiException) as refused:
        client.CoreV1Api(client.ApiClient(anonymous)).list_namespaced_pod("default")
    assert refused.value.status == 401
    assert json.loads(refused.value.body) == UNAUTHORIZED


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (Debian: kubernetes-client)")
def test_kubectl_works_with_the_kubeconfig_and_is_refused_with_another_token(local_runtime, tmp_path) -> None:
    env = dict(os.environ, KUBECONFIG=str(local_runtime.kubeconfig_path))
    ran = subprocess.run([KUBECTL, "get", "pods", "-o", "name"], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    forged = tmp_path / "forged-kubeconfig"
    forged.write_text(local_runtime.kubeconfig_path.read_text().replace(local_runtime.token, "forged"))
    refused = subprocess.run([KUBECTL, "get", "pods"], env=dict(env, KUBECONFIG=str(forged)),
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "Unauthorized" in refused.stderr or "provide credentials" in refused.stderr


def test_token_is_random_per_state_dir_and_kept_across_restarts(tmp_path) -> None:
    first = start_local_runtime(state_dir=tmp_path / "one", with_agent=False)
    first.stop()
    again = start_local_runtime(state_dir=tmp_path / "one", with_agent=False)
    other = start_local_runtime(state_dir=tmp_path / "two", with_agent=False)
    try:
        assert again.token == first.token  # a kubeconfig written before keeps working
        assert other.token != first.token
        client.CoreV1Api(again.api_client()).list_namespaced_pod("default")
    finally:
        again.stop()
        other.stop()


# -- the node agent's endpoint --------------------------------------------------------------------
def test_agent_endpoint_refuses_requests_without_the_token(local_runtime, kube_client) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod("default", _pod("logged", ["sh", "-c", "echo private output; sleep 30"]))
    _wait_phase(core, "logged", "Running")
    base = f"https://127.0.0.1:{local_runtime.agent.endpoint.port}"
    for token in (None, "wrong-token"):
        for method, path, body in (("GET", "/_crossdock/stats", None),
                                   ("GET", "/containerLogs/default/logged/base", None),
                                   ("POST", "/_crossdock/faults/kill", {"name": "logged"}),
                                   ("POST", "/_crossdock/faults/hold-pending", {"hold": True})):
            assert _https(base + path, ca=None, token=token, method=method, body=body) == (401, UNAUTHORIZED), path
    assert core.read_namespaced_pod("logged", "default").status.phase == "Running"  # not killed
    status, stats = agent_request(kube_client, "127.0.0.1", local_runtime.agent.endpoint.port, "/_crossdock/stats")
    assert status == 200 and stats["podsRunning"] == 1
    # the API server's log proxy authenticates itself to the agent
    deadline = time.monotonic() + WAIT_LIMIT
    while "private output" not in core.read_namespaced_pod_log("logged", "default"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    core.delete_namespaced_pod("logged", "default", grace_period_seconds=0)


def test_runtime_hooks_work_with_the_kubeconfig(local_runtime, kube_client) -> None:
    status, stats = runtime_request(kube_client, "GET", "/_crossdock/stats")
    assert status == 200 and int(stats["requestsServed"]) >= 0


# -- saved state and the pods' environment -------------------------------------------------------------
def test_saved_state_is_owner_only(local_runtime, kube_client) -> None:
    core = client.CoreV1Api(kube_client)
    secret_value = "s3cr3t-value"
    core.create_namespaced_pod("default", _pod("stateful", ["sh", "-c", "echo out"],
                                               env=[{"name": "PASSWORD", "value": secret_value}]))
    pod = _wait_phase(core, "stateful", "Succeeded", "Failed")
    state = local_runtime.kubeconfig_path.parent
    deadline = time.monotonic() + WAIT_LIMIT
    while not (state / "api" / "api-state.json").exists():  # written within a second
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pod_dir = state / "agent" / "pods" / pod.metadata.uid
    assert secret_value in (pod_dir / "plan.json").read_text()  # which is why it must be private
    files = [local_runtime.kubeconfig_path, state / "api" / "token", state / "api" / "api-state.json",
             state / "api" / "tls" / "apiserver.key", state / "agent" / "tls" / "kubelet.key",
             *[path for path in pod_dir.iterdir() if path.is_file()]]
    assert {str(path): oct(_mode(path)) for path in files} == {str(path): "0o600" for path in files}
    folders = [state, state / "api", state / "agent", state / "agent" / "pods", pod_dir]
    assert {str(path): oct(_mode(path)) for path in folders} == {str(path): "0o700" for path in folders}


def test_pods_do_not_inherit_the_runtime_environment(tmp_path, monkeypatch) -> None:
    from crossdock.configuration import conf

    monkeypatch.setenv("CROSSDOCK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RUNTIME_ONLY_SECRET", "must-not-leak")
    monkeypatch.setenv("CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN", "postgresql://user:pw@db/crossdock")
    conf.reload()
    runtime = start_local_runtime(state_dir=tmp_path / "runtime")  # its shims start with this environment
    try:
        core = client.CoreV1Api(runtime.api_client())
        core.create_namespaced_pod("default", _pod("envcheck", ["sh", "-c", "env; umask"],
                                                   env=[{"name": "GIVEN", "value": "by-the-spec"}]))
        _wait_phase(core, "envcheck", "Succeeded", "Failed")
        lines = core.read_namespaced_pod_log("envcheck", "default").splitlines()
        env = dict(line.split("=", 1) for line in lines if "=" in line)
        assert env["GIVEN"] == "by-the-spec" and env["HOSTNAME"] == "envcheck"
        assert env["PATH"] == os.environ["PATH"] and env["HOME"]
        assert "RUNTIME_ONLY_SECRET" not in env and "must-not-leak" not in "\n".join(lines)
        assert not [name for name in env if name.startswith("CROSSDOCK")]
        assert set(env) <= {"GIVEN", "HOSTNAME", "PATH", "HOME", "LANG", "LC_ALL", "TZ", "PWD", "SHLVL", "_"}
        assert lines[-1] == "0022"  # the task's own files are created as usual
    finally:
        runtime.stop()
        conf.reload()


# -- a client certificate, as a kube-apiserver with --kubelet-client-certificate presents ----------------
def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_agent_endpoint_accepts_a_client_certificate_from_its_ca_only(tmp_path) -> None:
    from crossdock.kubernetes.local_runtime.auth import BearerAuth
    from crossdock.kubernetes.local_runtime.log_server import EndpointAuth, KubeletEndpoint
    from crossdock.kubernetes.local_runtime.tls import ensure_self_signed

    class Source:
        def stats(self) -> dict:
            return {"node": "cert-node"}

    def make_client_cert(name: str) -> tuple[Path, Path, Path]:
        ca_key, ca, key, csr, cert = (tmp_path / f"{name}{suffix}" for suffix in
                                      ("-ca.key", "-ca.crt", ".key", ".csr", ".crt"))
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(ca_key), "-out", str(ca), "-days", "1", "-subj", f"/CN={name}-ca")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", "/CN=kube-apiserver-kubelet-client")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-out", str(cert), "-days", "1")
        return ca, cert, key

    trusted_ca, trusted_cert, trusted_key = make_client_cert("trusted")
    _, stranger_cert, stranger_key = make_client_cert("stranger")
    serving_cert, serving_key = ensure_self_signed(tmp_path / "tls")
    endpoint = KubeletEndpoint(source=Source(), host="127.0.0.1", port=0, cert=serving_cert, key=serving_key,
                               auth=EndpointAuth(bearer=BearerAuth("agent-token"), client_ca=trusted_ca)).start()
    try:
        def stats_with(cert: Path | None, key: Path | None) -> int:
            context = ssl._create_unverified_context()
            if cert is not None:
                context.load_cert_chain(str(cert), str(key))
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{endpoint.port}/_crossdock/stats",
                                            context=context, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert stats_with(trusted_cert, trusted_key) == 200
        assert stats_with(None, None) == 401
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            stats_with(stranger_cert, stranger_key)  # a certificate from another CA fails the handshake itself
    finally:
        endpoint.stop()
