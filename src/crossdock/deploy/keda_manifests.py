"""KEDA ScaledObjects that size each queue's worker Deployment by crossdock's formula (``crossdock deploy keda``).

The trigger is KEDA's ``prometheus`` scaler on the scheduler's own gauge
``crossdock_queue_desired_workers{queue="…"}`` — the formula's result,
``ceil((queued + running) / max_tasks_per_worker)`` kept within min..max — with
``threshold: "1"``. KEDA's metric type is ``AverageValue``, so the HPA it creates asks for
``ceil(value / 1)`` replicas: exactly the number the scheduler computed, and
``crossdock celery autoscaler`` would set. Why this scaler and not ``metrics-api``:
the formula is computed once, by the scheduler, from the same numbers ``crossdock queues``
prints; the PromQL query selects one labelled series without relying on how
``metrics-api`` walks Prometheus text; and a Prometheus that scrapes the scheduler is what
the metrics endpoint is for anyway.

How the rest maps: ``minReplicaCount``/``maxReplicaCount`` are the queue's min/max
(0 scales to zero: KEDA deactivates the Deployment while the gauge is 0);
``pollingInterval`` is ``[worker_queues] interval``; ``[worker_queues] cooldown`` is both
KEDA's ``cooldownPeriod`` (before going to zero) and the HPA's scale-down stabilization
window (before going down at all). ``ignoreNullValues: "false"`` makes a missing series
(scheduler down, scrape failing) an error, so KEDA holds the current size instead of
reading 0 and scaling the workers away.

What KEDA does not do: it cannot pick which pod goes. The HPA lowers ``spec.replicas``
and the ReplicaSet chooses (not-ready pods first, then at random among equals); the
chosen worker gets SIGTERM and Celery's warm shutdown finishes its tasks within
``terminationGracePeriodSeconds`` (``drain_grace``), after which Kubernetes kills it.
For drain-first scale-down (idle workers chosen, busy ones never cut short) run
``crossdock celery autoscaler`` instead — never both on one Deployment. The HPA also
ignores changes within its 10 % tolerance of the current size.
"""

from __future__ import annotations

import math
from typing import Any

from crossdock.configuration import ConfigError, conf
from crossdock.deploy.references import DEFAULT_PROMETHEUS_URL
from crossdock.monitoring.worker_deployments import QUEUE_KEY, deployment_name, selector_labels, worker_namespace
from crossdock.monitoring.worker_queues import WorkerQueueSpec

API_VERSION = "keda.sh/v1alpha1"
#: The scheduler's gauge of each queue's desired workers (crossdock.monitoring.metrics_collector).
DESIRED_WORKERS_METRIC = "crossdock_queue_desired_workers"
#: The HPA refuses a stabilization window above an hour.
MAX_STABILIZATION_SECONDS = 3600


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def desired_workers_query(queue: str) -> str:
    """One series: the highest value any scheduler reports (standbys report the same numbers)."""
    return f"max({DESIRED_WORKERS_METRIC}{{queue={promql_string(queue)}}})"


def scaled_object(spec: WorkerQueueSpec, *, namespace: str, prometheus_url: str, interval: float,
                  cooldown: float) -> dict[str, Any]:
    """The ScaledObject of one queue's worker Deployment.

    :param namespace: the Deployment's namespace (a ScaledObject must be in the same one).
    :param prometheus_url: the Prometheus server that scrapes the scheduler's metrics.
    :param interval: seconds between KEDA's polls of the query.
    :param cooldown: seconds before scaling down (and to zero) after the last need.
    """
    name = deployment_name(spec.name)
    cooldown_seconds = max(0, math.ceil(cooldown))
    return {
        "apiVersion": API_VERSION,
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "labels": selector_labels(spec.name),
                     "annotations": {QUEUE_KEY: spec.name}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "pollingInterval": max(1, math.ceil(interval)),
            "cooldownPeriod": cooldown_seconds,
            "minReplicaCount": spec.min_workers,
            "maxReplicaCount": spec.max_workers,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {
                "stabilizationWindowSeconds": min(cooldown_seconds, MAX_STABILIZATION_SECONDS)}}}},
            "triggers": [{
                "type": "prometheus",
                "name": "desired-workers",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": prometheus_url,
                    "query": desired_workers_query(spec.name),
                    "threshold": "1",
                    "activationThreshold": "0",
                    "ignoreNullValues": "false",
                },
            }],
        },
    }


def scaled_objects(specs: list[WorkerQueueSpec], *, prometheus_url: str = DEFAULT_PROMETHEUS_URL) -> list[dict]:
    """:func:`scaled_object` for each queue, with the namespace, interval and cooldown from the config."""
    namespace = worker_namespace()
    interval = conf.getfloat("worker_queues", "interval")
    cooldown = conf.getfloat("worker_queues", "cooldown")
    if interval <= 0 or cooldown < 0:
        raise ConfigError(f"[worker_queues] interval must be positive and cooldown not negative, got "
                          f"{interval} and {cooldown}")
    return [scaled_object(spec, namespace=namespace, prometheus_url=prometheus_url, interval=interval,
                          cooldown=cooldown) for spec in specs]
