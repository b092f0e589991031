"""How many of crossdock's pods are in each phase, asked of the Kubernetes API.

Every pod the KubernetesExecutor creates carries the ``kubernetes_executor=True`` label,
whichever scheduler created it, so one list call (label selector, all namespaces the
executor may use) counts them.

Warm pods (``[kubernetes_executor] warm_pool_size``) carry that label too. One that holds
no assignment yet is the pool, not a try, so it is counted apart, per profile
(:attr:`PodCounts.warm`); once assigned it is its try's pod and counted with the others.
Whether an idle warm pod has said it is ready shows only on its log, which this module
does not read: Pending and Running are what the API tells every reader alike.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from crossdock.kubernetes.pod_generator import EXECUTOR_LABEL
from crossdock.kubernetes.warm_profile import PROFILE_LABEL, assignment_of, is_warm

#: Seconds one list call may take before the monitor reports the API unreachable.
POD_LIST_TIMEOUT = 3.0
#: The phases of an idle warm pod that count as the pool (a finished one is neither pool nor try).
WARM_PHASES = ("Pending", "Running")


@dataclass
class PodCounts:
    """crossdock's pods split into tries' pods (by phase) and idle warm pods (by profile and phase)."""

    #: ``phase → count`` of pods that run or wait for a try (assigned warm pods included).
    phases: Counter = field(default_factory=Counter)
    #: ``profile key → Counter(phase → count)`` of unassigned warm pods, Pending or Running.
    warm: dict[str, Counter] = field(default_factory=dict)


def _phase(pod: Mapping[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or "Unknown"


def count_pods(pods: Iterable[Mapping[str, Any]]) -> PodCounts:
    """Split pod objects (as the API returns them, JSON) into tries' pods and idle warm pods."""
    counts = PodCounts()
    for pod in pods:
        phase = _phase(pod)
        if not is_warm(pod) or assignment_of(pod) is not None:
            counts.phases[phase] += 1
        elif phase in WARM_PHASES:
            profile = ((pod.get("metadata") or {}).get("labels") or {}).get(PROFILE_LABEL) or "unknown"
            counts.warm.setdefault(profile, Counter())[phase] += 1
    return counts


def read_pod_counts() -> PodCounts:
    """crossdock's worker pods, counted (raises what the client raises)."""
    from kubernetes import client

    from crossdock.kubernetes.kube_client import get_kube_client
    from crossdock.kubernetes.kube_config import KubeExecutorConfig

    settings = KubeExecutorConfig.from_conf()
    api = get_kube_client()
    try:
        core = client.CoreV1Api(api)
        options = {"label_selector": f"{EXECUTOR_LABEL}=True", "_request_timeout": POD_LIST_TIMEOUT,
                   "_preload_content": False}
        if settings.multi_namespace_mode:
            response = core.list_pod_for_all_namespaces(**options)
        else:
            response = core.list_namespaced_pod(settings.namespace, **options)
        return count_pods(json.loads(response.data).get("items") or [])
    finally:
        api.close()
