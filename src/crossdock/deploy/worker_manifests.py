"""One Celery worker Deployment per ``[worker_queues]`` queue (``crossdock deploy workers``).

Each pod runs ``crossdock celery worker -q QUEUE --concurrency max_tasks_per_worker`` with
the queue's ``resources``, named ``celery@<pod name>`` through the downward API so the
autoscaler can tell which pod a Celery worker is. ``terminationGracePeriodSeconds`` is
``[worker_queues] drain_grace``: a worker told to stop (SIGTERM) finishes what it runs —
Celery's warm shutdown — for that long before Kubernetes kills it.

``spec.replicas`` is left out by default: ``kubectl apply`` of the file again must not
undo what the autoscaler (or KEDA) set. A new Deployment then starts with one pod until
the autoscaler sizes it; ``with_replicas`` writes ``min_workers`` instead, for a cluster
without an autoscaler.
"""

from __future__ import annotations

import math
from typing import Any

from crossdock.configuration import ConfigError, conf
from crossdock.deploy.references import (
    CONFIG_DIR, CONFIG_FILE, CONFIG_MAP_NAME, IMAGE_USER, SECRET_NAME, WORKER_SECRET_ENV, WORKER_SERVICE_ACCOUNT,
    secret_env)
from crossdock.kubernetes.kube_config import KubeExecutorConfig
from crossdock.kubernetes.pod_generator import PodOverrideError, check_pod_override
from crossdock.monitoring.worker_deployments import (
    CELERY_HOSTNAME_PREFIX, QUEUE_KEY, deployment_name, selector_labels, worker_namespace)
from crossdock.monitoring.worker_queues import WorkerQueueSpec

#: The worker container's name.
CONTAINER_NAME = "worker"
#: Environment variable holding the pod's name (downward API), used in the Celery node name.
POD_NAME_ENV = "POD_NAME"


def worker_command(spec: WorkerQueueSpec) -> list[str]:
    """The worker's argv: the queue, its slots, and a node name that names the pod."""
    return ["crossdock", "celery", "worker", "-q", spec.name, "--concurrency", str(spec.max_tasks_per_worker),
            "--celery-hostname", f"{CELERY_HOSTNAME_PREFIX}$({POD_NAME_ENV})"]


def checked_resources(spec: WorkerQueueSpec) -> dict[str, Any]:
    """The queue's ``resources`` as a container's, or a ConfigError naming the queue and the field."""
    where = f"[worker_queues] queue {spec.name!r} resources"
    try:
        pod = check_pod_override({"spec": {"containers": [{"name": CONTAINER_NAME, "resources": spec.resources}]}},
                                 where=where)
    except PodOverrideError as exc:
        raise ConfigError(str(exc).replace("spec.containers[0].resources.", "")) from None
    return pod["spec"]["containers"][0].get("resources", {})


def worker_image() -> str:
    image = KubeExecutorConfig.from_conf().worker_image
    if not image:
        raise ConfigError("[kubernetes_executor] worker_container_repository is empty: the worker "
                          "Deployments need an image")
    return image


def worker_deployment(spec: WorkerQueueSpec, *, image: str, namespace: str, drain_grace: float,
                      secret: str = SECRET_NAME, config_map: str = CONFIG_MAP_NAME,
                      with_replicas: bool = False) -> dict[str, Any]:
    """The Deployment of one queue's workers.

    :param image: the worker image (``repository:tag``).
    :param namespace: where the Deployment goes (the autoscaler looks there).
    :param drain_grace: seconds a stopped worker may take to finish its tasks.
    :param secret: the Secret holding the broker and result-backend URLs.
    :param config_map: the ConfigMap holding ``crossdock.cfg``.
    :param with_replicas: write ``spec.replicas: min_workers`` (see the module docstring).
    """
    labels = selector_labels(spec.name)
    annotations = {QUEUE_KEY: spec.name}
    container = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": worker_command(spec),
        "env": [{"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "CROSSDOCK_CONFIG", "value": CONFIG_FILE},
                *secret_env(WORKER_SECRET_ENV, secret=secret)],
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": IMAGE_USER},
    }
    resources = checked_resources(spec)
    if resources:
        container["resources"] = resources
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(spec.name), "namespace": namespace, "labels": labels,
                     "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "serviceAccountName": WORKER_SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": math.ceil(drain_grace),
                    "securityContext": {"fsGroup": IMAGE_USER},
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": config_map}}],
                },
            },
        },
    }
    if with_replicas:
        deployment["spec"] = {"replicas": spec.min_workers, **deployment["spec"]}
    return deployment


def worker_deployments(specs: list[WorkerQueueSpec], **options: Any) -> list[dict[str, Any]]:
    """:func:`worker_deployment` for each queue, with the image, namespace and grace from the config."""
    image, namespace = worker_image(), worker_namespace()
    drain_grace = conf.getfloat("worker_queues", "drain_grace")
    if drain_grace < 0:
        raise ConfigError(f"[worker_queues] drain_grace must not be negative, got {drain_grace}")
    return [worker_deployment(spec, image=image, namespace=namespace, drain_grace=drain_grace, **options)
            for spec in specs]
