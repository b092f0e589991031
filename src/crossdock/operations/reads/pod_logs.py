"""A running pod's container log, for a process that is not the scheduler (the web server).

The KubernetesExecutor reads a running try's pod log from the pod it holds in memory;
another process finds the pod by the try's labels (checked against its annotations,
which carry the raw ids) and reads it with the executor's own reader
(:class:`~crossdock.executors.kubernetes_pod_logs.PodLogs`).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("crossdock.operations")

#: Seconds the pod lookup may take before the log is reported unavailable.
POD_LOOKUP_TIMEOUT = 5.0


def _pod_reader(core: Any):
    from crossdock.executors.kubernetes_pod_logs import PodLogs

    class _Reader(PodLogs):
        def __init__(self) -> None:
            self.core = core
            self._records = {}
            self.log = log

    return _Reader()


def read_running_pod_log(ti: Any, try_number: int) -> tuple[str, str] | None:
    """``(log text, "log of running pod ns/name")`` of the try's pod, or None when none is found.

    A cluster that is not configured or does not answer is None too (logged), never an
    error: the caller then says that no log is there yet.
    """
    from kubernetes import client

    from crossdock.configuration import ConfigError
    from crossdock.kubernetes.kube_client import get_kube_client
    from crossdock.kubernetes.kube_config import KubeExecutorConfig
    from crossdock.kubernetes.pod_generator import EXECUTOR_LABEL, annotations_to_key, key_labels

    key = ti.key.with_try_number(try_number)
    try:
        settings = KubeExecutorConfig.from_conf()
        api = get_kube_client()
    except ConfigError as exc:
        log.info("no pod log for %s: %s", key, exc)
        return None
    try:
        core = client.CoreV1Api(api)
        selector = ",".join([f"{EXECUTOR_LABEL}=True", *(f"{k}={v}" for k, v in key_labels(key).items())])
        try:
            if settings.multi_namespace_mode:
                pods = core.list_pod_for_all_namespaces(label_selector=selector, _request_timeout=POD_LOOKUP_TIMEOUT)
            else:
                pods = core.list_namespaced_pod(settings.namespace, label_selector=selector,
                                                _request_timeout=POD_LOOKUP_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - ApiException, urllib3's and socket errors share no base
            log.warning("could not look up the pod of %s: %s", key, getattr(exc, "reason", exc))
            return None
        pod = next((pod for pod in pods.items if annotations_to_key(pod.metadata.annotations) == key), None)
        if pod is None:
            return None
        text = _pod_reader(core)._read_pod_log(pod.metadata.name, pod.metadata.namespace)
        if text is None:
            return None
        return text, f"log of running pod {pod.metadata.namespace}/{pod.metadata.name}"
    finally:
        api.close()
