"""How many of crossdock's pods are in each phase, asked of the Kubernetes API.

Every pod the KubernetesExecutor creates carries the ``kubernetes_executor=True`` label,
whichever scheduler created it, so one list call (label selector, all namespaces the
executor may use) counts them.
"""

from __future__ import annotations

from collections import Counter

from crossdock.kubernetes.pod_generator import EXECUTOR_LABEL

#: Seconds one list call may take before the monitor reports the API unreachable.
POD_LIST_TIMEOUT = 3.0


def pods_by_phase() -> Counter:
    """``phase → count`` of crossdock's worker pods (raises what the client raises)."""
    from kubernetes import client

    from crossdock.kubernetes.kube_client import get_kube_client
    from crossdock.kubernetes.kube_config import KubeExecutorConfig

    settings = KubeExecutorConfig.from_conf()
    api = get_kube_client()
    try:
        core = client.CoreV1Api(api)
        selector = f"{EXECUTOR_LABEL}=True"
        if settings.multi_namespace_mode:
            pods = core.list_pod_for_all_namespaces(label_selector=selector, _request_timeout=POD_LIST_TIMEOUT)
        else:
            pods = core.list_namespaced_pod(settings.namespace, label_selector=selector,
                                            _request_timeout=POD_LIST_TIMEOUT)
        return Counter((pod.status.phase if pod.status else None) or "Unknown" for pod in pods.items)
    finally:
        api.close()
