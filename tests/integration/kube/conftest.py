"""Two tiers for the pods contract: the local pods API + our node agent, and a real
kube-apiserver + our node agent.

The real tier needs the kube-apiserver that ``.ci/kube-apiserver.sh`` builds and starts; it
exports the kubeconfig path in ``CROSSDOCK_TEST_REAL_KUBECONFIG``. Without it the real tier
skips (saying so), unless ``CROSSDOCK_REQUIRE_SERVICES=1``, where it fails. Each test
run gets a fresh namespace there (namespaces are not deleted: nothing would finalize them).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client, config

from crossdock.kubernetes.local_runtime import LocalRuntime, start_local_runtime
from crossdock.kubernetes.local_runtime.log_server import endpoint_auth_for
from crossdock.kubernetes.local_runtime.node_agent import NodeAgent

REAL_KUBECONFIG_ENV = "CROSSDOCK_TEST_REAL_KUBECONFIG"
REQUIRE_ENV = "CROSSDOCK_REQUIRE_SERVICES"
REJECT_IMAGES = ["*:does-not-exist"]
#: Upper bound for anything the tests wait on; a hang fails instead of blocking the suite.
WAIT_LIMIT = 30.0


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or fail under CROSSDOCK_REQUIRE_SERVICES=1) when ``host:port`` does not answer."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} not reachable at {host}:{port}: {exc}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class PodsTier:
    """What a contract test gets: a client, a namespace of its own, and the node agent."""

    name: str
    core: client.CoreV1Api
    namespace: str
    make_agent: Callable[[], NodeAgent]
    agent: NodeAgent
    runtime: LocalRuntime | None = None
    _names: set[str] = field(default_factory=set)

    @property
    def api_client(self) -> client.ApiClient:
        return self.core.api_client

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def restart_agent(self, *, kill_pods: bool = False) -> NodeAgent:
        """Stop the agent as a crash would (pods keep running unless told) and start a new one."""
        self.agent.stop(kill_pods=kill_pods)
        self.agent = self.make_agent()
        if self.runtime is not None:
            self.runtime.agent = self.agent
            self.runtime.api.agent_hooks = self.agent
        return self.agent

    # -- what the tests share --------------------------------------------------------------
    @staticmethod
    def terminated(pod: dict[str, Any]) -> dict[str, Any]:
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        return (statuses[0].get("state") or {}).get("terminated") or {}

    @staticmethod
    def waiting(pod: dict[str, Any]) -> dict[str, Any]:
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        return (statuses[0].get("state") or {}).get("waiting") or {}

    def pod(self, name: str, command: list[str], *, labels: dict[str, str] | None = None,
            container: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
        base = {"name": "base", "image": "crossdock/test:1", "command": command}
        base.update(container or {})
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": labels or {}},
                "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
                         "containers": [base], **spec}}

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.core.create_namespaced_pod(self.namespace, body, _preload_content=False)
        return json.loads(response.data)

    def read(self, name: str) -> dict[str, Any]:
        return json.loads(self.core.read_namespaced_pod(name, self.namespace, _preload_content=False).data)

    def wait_for(self, name: str, predicate: Callable[[dict[str, Any]], bool],
                 timeout: float = WAIT_LIMIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        pod = self.read(name)
        while not predicate(pod):
            if time.monotonic() > deadline:
                raise AssertionError(f"pod {name} never reached the expected state; last status: "
                                     f"{json.dumps(pod.get('status'))}")
            time.sleep(0.05)
            pod = self.read(name)
        return pod

    def wait_phase(self, name: str, *phases: str) -> dict[str, Any]:
        return self.wait_for(name, lambda p: p.get("status", {}).get("phase") in phases)

    def wait_gone(self, name: str, timeout: float = WAIT_LIMIT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.read(name)
            except client.ApiException as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(0.05)
        raise AssertionError(f"pod {name} was never deleted")

    def raw(self, method: str, path: str, body: Any = None,
            content_type: str = "application/json") -> tuple[int, Any, dict[str, str]]:
        """A request the typed client would refuse to send (unknown fields, invalid pods)."""
        api = self.api_client
        _, url, headers, _, _ = api.param_serialize(method=method, resource_path=path,
                                                    header_params={"Content-Type": content_type,
                                                                   "Accept": "application/json"},
                                                    auth_settings=["BearerToken"])
        response = api.rest_client.request(method, url, headers=headers,
                                           body=body)
        data = response.read() if hasattr(response, "read") else response.data
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data
        return response.status, parsed, dict(response.getheaders())


def _local_tier(tmp_path: Path) -> PodsTier:
    runtime = start_local_runtime(state_dir=tmp_path, reject_images=REJECT_IMAGES, node_name="contract-local")
    core = client.CoreV1Api(runtime.api_client())
    namespace = f"contract-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})

    def make_agent() -> NodeAgent:
        from crossdock.kubernetes.local_runtime import start_node_agent
        return start_node_agent(api_client=runtime.api_client(), state_dir=tmp_path, node_name="contract-local",
                                reject_images=REJECT_IMAGES)

    return PodsTier(name="local", core=core, namespace=namespace, make_agent=make_agent,
                    agent=runtime.agent, runtime=runtime)


def _real_tier(tmp_path: Path) -> PodsTier:
    kubeconfig = os.environ.get(REAL_KUBECONFIG_ENV)
    if not kubeconfig:
        message = f"real kube-apiserver not configured: {REAL_KUBECONFIG_ENV} is unset (run .ci/kube-apiserver.sh)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = urlsplit(yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"])
    require_service("kube-apiserver", server.hostname or "127.0.0.1", server.port or 443)
    api_client = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api_client)
    namespace = f"contract-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    node_name = f"crossdock-{namespace}"

    def make_agent() -> NodeAgent:
        # This kube-apiserver runs without --kubelet-client-certificate: it fetches logs from
        # a node with no credentials, so the agent serves logs (only logs) to anyone here.
        agent_client = config.new_client_from_config(config_file=kubeconfig)
        auth = endpoint_auth_for(agent_client, tmp_path / "agent", anonymous_log_reads=True)
        return NodeAgent(api_client=agent_client, node_name=node_name, state_dir=tmp_path / "agent",
                         namespace=namespace, reject_images=REJECT_IMAGES, endpoint_auth=auth).start()

    return PodsTier(name="real", core=core, namespace=namespace, make_agent=make_agent, agent=make_agent())


@pytest.fixture(scope="session", params=["local", "real"])
def pods_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The pods API under contract, on both tiers; one namespace and one node agent per test run."""
    tmp_path = tmp_path_factory.mktemp(f"pods-{request.param}")
    tier = _local_tier(tmp_path) if request.param == "local" else _real_tier(tmp_path)
    yield tier
    tier.agent.stop(kill_pods=True)
    if tier.runtime is not None:
        tier.runtime.agent = None
        tier.runtime.stop()


@pytest.fixture
def local_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private local runtime (API + agent) for tests that break things on purpose."""
    from crossdock.configuration import conf

    monkeypatch.setenv("CROSSDOCK_HOME", str(tmp_path / "home"))
    conf.reload()
    runtime = start_local_runtime(state_dir=tmp_path / "runtime", reject_images=REJECT_IMAGES)
    yield runtime
    runtime.stop()
    conf.reload()
