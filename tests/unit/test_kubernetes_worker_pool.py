"""Which pods the *kubernetes* worker pool retires first (the rest runs against a real API server,
``tests/integration/test_kubernetes_autoscaling.py``). Pods are the official client's models."""

from __future__ import annotations

from datetime import datetime, timezone

from kubernetes.client import V1ObjectMeta, V1Pod, V1PodStatus

from crossdock.monitoring.kubernetes_workers import KubernetesWorkerPool
from crossdock.monitoring.queue_status import WorkerInfo
from crossdock.monitoring.worker_deployments import pod_name_of


def pod(name: str, phase: str, second: int = 0) -> V1Pod:
    created = datetime(2030, 1, 1, 0, 0, second, tzinfo=timezone.utc)
    return V1Pod(metadata=V1ObjectMeta(name=name, creation_timestamp=created), status=V1PodStatus(phase=phase))


def worker(name: str, active: int, reserved: int = 0) -> WorkerInfo:
    return WorkerInfo(hostname=f"celery@{name}", concurrency=4, active=active, reserved=reserved)


def test_pods_with_least_to_lose_go_first_and_a_busy_one_only_after_every_idle_one():
    pods = [pod("busy-2", "Running"), pod("busy-1", "Running"), pod("idle-old", "Running", 1),
            pod("idle-new", "Running", 9), pod("silent", "Running"), pod("pending", "Pending"),
            pod("holds-one", "Running")]
    workers = {"busy-2": worker("busy-2", 2), "busy-1": worker("busy-1", 1), "idle-old": worker("idle-old", 0),
               "idle-new": worker("idle-new", 0), "holds-one": worker("holds-one", 0, reserved=1)}
    ranked = sorted(pods, key=lambda p: KubernetesWorkerPool._retire_rank(p, workers.get(p.metadata.name)))
    assert [p.metadata.name for p in ranked] == [
        "pending",              # never started: nothing to drain
        "idle-new", "idle-old",  # idle workers, the newest first
        "silent",               # did not answer the inspect: maybe busy
        "busy-1", "holds-one", "busy-2"]  # the least loaded busy one first (a reserved task counts)


def test_a_worker_s_pod_is_read_from_its_celery_node_name():
    assert pod_name_of("celery@crossdock-worker-default-6d9f-x2x7q") == "crossdock-worker-default-6d9f-x2x7q"
    assert pod_name_of("embedded0-123@laptop") is None
    assert pod_name_of("celery@") is None
