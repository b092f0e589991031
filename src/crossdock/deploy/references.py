"""Names the generated manifests and the ``deploy/`` kustomize base share.

A generated object never holds a secret value: the broker and result-backend URLs (and,
for the scheduler and autoscaler only, the metadata database URL) come from the keys of
one Secret the operator creates, referenced by name (design principles 1 and 8).
"""

from __future__ import annotations

from typing import Any

#: The Secret the operator creates (``kubectl create secret generic crossdock-secrets ...``).
SECRET_NAME = "crossdock-secrets"
#: Its keys, and the setting each one fills in (as a ``CROSSDOCK__SECTION__KEY`` variable).
BROKER_URL_KEY = "celery-broker-url"
RESULT_BACKEND_KEY = "celery-result-backend"
#: The ConfigMap holding ``crossdock.cfg`` (the base generates it from ``deploy/crossdock.cfg``).
CONFIG_MAP_NAME = "crossdock-config"
#: Where the ConfigMap is mounted, and the file ``CROSSDOCK_CONFIG`` names.
CONFIG_DIR = "/etc/crossdock"
CONFIG_FILE = f"{CONFIG_DIR}/crossdock.cfg"
#: The service account of every worker pod: no API access, no token mounted (deploy/rbac.yaml).
WORKER_SERVICE_ACCOUNT = "crossdock-worker"
#: Where KEDA reaches the Prometheus that scrapes the scheduler, unless told otherwise.
DEFAULT_PROMETHEUS_URL = "http://prometheus-server.monitoring.svc:9090"
#: The user the worker image runs as (deploy/Dockerfile.worker).
IMAGE_USER = 50000

#: A worker gets the broker and result backend, never the metadata database (principle 1).
WORKER_SECRET_ENV = (("CROSSDOCK__CELERY__BROKER_URL", BROKER_URL_KEY),
                     ("CROSSDOCK__CELERY__RESULT_BACKEND", RESULT_BACKEND_KEY))


def secret_env(pairs: tuple[tuple[str, str], ...], *, secret: str = SECRET_NAME) -> list[dict[str, Any]]:
    """``env`` entries that read each variable from a key of ``secret`` (the value stays in the Secret)."""
    return [{"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for name, key in pairs]
