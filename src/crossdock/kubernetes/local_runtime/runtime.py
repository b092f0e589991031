"""Starting and stopping the local pod runtime: the pods API and a node agent, together or alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from crossdock.configuration import conf
from crossdock.kubernetes.local_runtime.api_server import ApiServer
from crossdock.kubernetes.local_runtime.auth import load_or_create_token
from crossdock.kubernetes.local_runtime.kubeconfig import write_kubeconfig
from crossdock.kubernetes.local_runtime.node_agent import NodeAgent
from crossdock.kubernetes.local_runtime.private_files import private_dir
from crossdock.kubernetes.local_runtime.settings import SECTION, reject_image_patterns
from crossdock.kubernetes.local_runtime.store import ObjectStore
from crossdock.kubernetes.local_runtime.tls import ensure_self_signed

KUBECONFIG_NAME = "kubeconfig"
API_STATE_DIR = "api"
AGENT_STATE_DIR = "agent"


@dataclass
class LocalRuntime:
    """A running local runtime. ``url`` and ``kubeconfig_path`` (which holds ``token``) are what clients need."""

    url: str
    kubeconfig_path: Path
    token: str = field(default="", repr=False)
    ca_cert: Path | None = None
    api: ApiServer | None = None
    agent: NodeAgent | None = None
    _stopped: bool = field(default=False, repr=False)

    def api_client(self) -> client.ApiClient:
        """A fresh official client configured for this runtime."""
        configuration = client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"BearerToken": f"Bearer {self.token}"}
        if self.ca_cert is not None:
            configuration.ssl_ca_cert = str(self.ca_cert)
        return client.ApiClient(configuration)

    def stop(self, *, kill_pods: bool = True) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.agent is not None:
            self.agent.stop(kill_pods=kill_pods)
        if self.api is not None:
            self.api.stop()


def start_local_runtime(*, state_dir: Path | str, port: int = 0, host: str | None = None,
                        with_agent: bool = True, node_name: str | None = None,
                        reject_images: list[str] | None = None, kubeconfig_path: Path | str | None = None,
                        history_limit: int | None = None) -> LocalRuntime:
    """Start the pods API on ``host:port`` (0 = any free port) and, unless told not to, a node agent.

    :param state_dir: where the API keeps its objects and token (made on first start, kept
        after) and the agent its pods and logs; owner-only (0700).
    :param with_agent: also start a node agent that runs the pods as local processes.
    :param node_name: node the agent registers (default from ``[kubernetes_local_runtime]``).
    :param reject_images: image patterns reported as ErrImagePull (default from config).
    :param kubeconfig_path: where to write the kubeconfig (default ``<state_dir>/kubeconfig``).
    """
    state = private_dir(state_dir)
    host = host or conf.getstr(SECTION, "host")
    history = history_limit if history_limit is not None else conf.getint(SECTION, "history_limit")
    token = load_or_create_token(state / API_STATE_DIR)
    cert, key = ensure_self_signed(private_dir(state / API_STATE_DIR / "tls"), name="apiserver", hosts=(host,))
    store = ObjectStore(history_limit=history, state_dir=state / API_STATE_DIR)
    api = ApiServer(host=host, port=port, store=store, token=token, tls=(cert, key)).start()
    runtime = LocalRuntime(url=api.url, kubeconfig_path=Path(kubeconfig_path or state / KUBECONFIG_NAME), api=api,
                           token=token, ca_cert=cert)
    write_kubeconfig(runtime.kubeconfig_path, server=api.url, token=token, ca_cert=cert)
    if with_agent:
        try:
            runtime.agent = start_node_agent(api_client=runtime.api_client(), state_dir=state,
                                             node_name=node_name, reject_images=reject_images)
        except Exception:
            api.stop()
            raise
        api.agent_hooks = runtime.agent
    return runtime


def start_node_agent(*, state_dir: Path | str, api_client: client.ApiClient | None = None,
                     kubeconfig: str | None = None, node_name: str | None = None,
                     reject_images: list[str] | None = None, namespace: str | None = None) -> NodeAgent:
    """Start a node agent against any API server (ours through ``api_client``, or a kubeconfig).

    Its own endpoint (logs, stats, fault hooks) accepts the bearer token the agent itself
    uses with the API server, which is what our API server sends when it fetches a log.
    """
    return NodeAgent(api_client=api_client, kubeconfig=kubeconfig,
                     node_name=node_name or conf.getstr(SECTION, "node_name"),
                     state_dir=Path(state_dir) / AGENT_STATE_DIR, namespace=namespace,
                     reject_images=reject_images if reject_images is not None else reject_image_patterns()).start()
