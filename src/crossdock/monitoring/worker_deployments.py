"""Where a queue's Celery workers live on Kubernetes: one Deployment per queue, and its names.

``crossdock deploy workers`` writes these Deployments and ``crossdock celery autoscaler``
scales them, so both take the Deployment's name, namespace and labels from here: the
name is ``[worker_queues] deployment_name`` with ``{queue}`` replaced by the queue made
DNS-safe, in ``[worker_queues] namespace`` (empty: ``[kubernetes_executor] namespace``).

A worker pod's Celery node name is ``celery@<pod name>`` (the Deployment passes the pod's
name in through the downward API), which is how the autoscaler maps a Celery worker that
answers an inspect broadcast back to the pod it must retire.
"""

from __future__ import annotations

import hashlib
import re

from crossdock.configuration import ConfigError, conf
from crossdock.kubernetes.pod_generator import make_safe_label_value

SECTION = "worker_queues"
#: Labels every worker pod (and its Deployment) carries; the selector is these plus the queue.
APP_LABELS = {"app.kubernetes.io/name": "crossdock", "app.kubernetes.io/component": "celery-worker"}
#: Label holding the queue (label-safe); the raw name is in the annotation of the same key.
QUEUE_KEY = "crossdock.io/queue"
#: Prefix of a worker pod's Celery node name; the rest is the pod's name.
CELERY_HOSTNAME_PREFIX = "celery@"

MAX_NAME_LENGTH = 63
HASH_LENGTH = 8
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_UNSAFE = re.compile(r"[^a-z0-9-]+")


def dns_safe(text: str, *, room: int = MAX_NAME_LENGTH) -> str:
    """``text`` as a DNS-1123 label of at most ``room`` characters.

    A name that had to change gets a hash of the original as suffix, so ``high_memory``
    and ``high-memory`` still get different Deployments.
    """
    if len(text) <= room and _DNS_LABEL.match(text):
        return text
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]
    stem = re.sub(r"-{2,}", "-", _UNSAFE.sub("-", text.lower()))[:max(0, room - HASH_LENGTH - 1)].strip("-")
    return f"{stem}-{digest}" if stem else digest


def deployment_name(queue: str, *, template: str | None = None) -> str:
    """The Deployment of ``queue``'s workers; a template that cannot give a valid name is a ConfigError."""
    template = conf.getstr(SECTION, "deployment_name") if template is None else template
    if "{queue}" not in template:
        raise ConfigError(f"[{SECTION}] deployment_name must contain {{queue}}, got {template!r}")
    fixed = len(template.replace("{queue}", ""))
    name = template.replace("{queue}", dns_safe(queue, room=MAX_NAME_LENGTH - fixed))
    if len(name) > MAX_NAME_LENGTH or not _DNS_LABEL.match(name):
        raise ConfigError(f"[{SECTION}] deployment_name {template!r} gives {name!r} for queue {queue!r}, "
                          f"not a DNS-1123 label (lower-case letters, digits and '-', at most "
                          f"{MAX_NAME_LENGTH} characters)")
    return name


def worker_namespace() -> str:
    """``[worker_queues] namespace``, or the KubernetesExecutor's namespace when it is empty."""
    from crossdock.kubernetes.kube_config import SECTION as KUBE_SECTION, DEFAULT_NAMESPACE

    return (conf.getstr(SECTION, "namespace") or conf.getstr(KUBE_SECTION, "namespace")
            or DEFAULT_NAMESPACE)


def selector_labels(queue: str) -> dict[str, str]:
    """The labels that select ``queue``'s worker pods (the Deployment's ``matchLabels``)."""
    return {**APP_LABELS, QUEUE_KEY: make_safe_label_value(queue)}


def pod_name_of(celery_hostname: str) -> str | None:
    """The pod a worker named ``celery@<pod>`` runs in; None for a worker not named that way."""
    if not celery_hostname.startswith(CELERY_HOSTNAME_PREFIX):
        return None
    return celery_hostname[len(CELERY_HOSTNAME_PREFIX):] or None
