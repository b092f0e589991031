"""The official client, configured from ``[kubernetes_executor]`` in_cluster / config_file / cluster_context.

One function builds the ``ApiClient``; everything else in crossdock takes that client as
a parameter, so tests and benchmarks hand in one pointed at the local pod runtime and
nothing reaches for global client configuration.
"""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from crossdock.configuration import ConfigError
from crossdock.kubernetes.kube_config import SECTION, KubeExecutorConfig


def get_kube_client(*, in_cluster: bool | None = None, config_file: str | None = None,
                    cluster_context: str | None = None) -> client.ApiClient:
    """An ``ApiClient`` for the configured cluster.

    :param in_cluster: use the pod's service account (the scheduler runs in the cluster).
    :param config_file: kubeconfig path; empty means ``$KUBECONFIG`` or ``~/.kube/config``.
    :param cluster_context: kubeconfig context; empty means the file's current context.

    Each parameter left as None is read from ``[kubernetes_executor]``. A missing or
    broken kubeconfig raises :class:`ConfigError` naming the keys to fix.
    """
    settings = None
    if in_cluster is None or config_file is None or cluster_context is None:
        settings = KubeExecutorConfig.from_conf()
    in_cluster = settings.in_cluster if in_cluster is None else in_cluster
    config_file = settings.config_file if config_file is None else config_file
    cluster_context = settings.cluster_context if cluster_context is None else cluster_context
    try:
        if in_cluster:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        return config.new_client_from_config(config_file=config_file or None, context=cluster_context or None)
    except (ConfigException, OSError) as exc:
        where = "in-cluster service account" if in_cluster else (config_file or "$KUBECONFIG / ~/.kube/config")
        raise ConfigError(f"[{SECTION}] cannot configure the Kubernetes client from {where}: {exc} "
                          f"(see in_cluster, config_file, cluster_context)") from None


class ApiCallCounter:
    """Counts every request an ``ApiClient`` sends (the benchmark reports calls per task)."""

    def __init__(self, api_client: client.ApiClient):
        self.calls = 0
        self.by_method: dict[str, int] = {}
        self._lock = threading.Lock()
        original = api_client.call_api

        def counted(*args: Any, **kwargs: Any) -> Any:
            method = str(args[0] if args else kwargs.get("method", "?")).upper()
            with self._lock:
                self.calls += 1
                self.by_method[method] = self.by_method.get(method, 0) + 1
            return original(*args, **kwargs)

        api_client.call_api = counted  # type: ignore[method-assign]


def retry_after_seconds(exc) -> float | None:
    """The ``Retry-After`` of an ApiException (429/503) in seconds, None when absent or unreadable."""
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
