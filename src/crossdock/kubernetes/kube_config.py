"""How the KubernetesExecutor uses ``[kubernetes_executor]``: read once into one object.

The keys are declared in :mod:`crossdock.config_schema`; :func:`KubeExecutorConfig.from_conf`
reads them once, so the executor does not re-parse configuration on every loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from crossdock.config_schema import KUBERNETES_EXECUTOR
from crossdock.configuration import ConfigError, conf

SECTION = "kubernetes_executor"

DEFAULT_NAMESPACE = KUBERNETES_EXECUTOR["namespace"].default
DEFAULT_WORKER_REPOSITORY = KUBERNETES_EXECUTOR["worker_container_repository"].default
DEFAULT_WORKER_TAG = KUBERNETES_EXECUTOR["worker_container_tag"].default
DEFAULT_CREATION_BATCH_SIZE = KUBERNETES_EXECUTOR["worker_pods_creation_batch_size"].default
DEFAULT_PUBLISH_MAX_RETRIES = KUBERNETES_EXECUTOR["task_publish_max_retries"].default
#: Container reasons of a Pending pod that will never start: fail the try at once.
DEFAULT_FATAL_REASONS = KUBERNETES_EXECUTOR["worker_pod_pending_fatal_container_state_reasons"].default


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


#: A DNS-1123 subdomain, what the API server takes as a service account's name.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _service_account_name(value: str) -> str:
    """``value`` stripped; refused here, where the option is named, rather than by every warm pod's create."""
    name = value.strip()
    if name and (len(name) > 253 or not _SUBDOMAIN.fullmatch(name)):
        raise ConfigError(f"[{SECTION}] warm_pod_service_account must be a service account name (lower-case "
                          f"letters, digits, '-' and '.'), or empty for the task pod's own; got {value!r}")
    return name


@dataclass(frozen=True)
class KubeExecutorConfig:
    """The section's values, read once."""

    namespace: str = DEFAULT_NAMESPACE
    pod_template_file: str = ""
    worker_container_repository: str = DEFAULT_WORKER_REPOSITORY
    worker_container_tag: str = DEFAULT_WORKER_TAG
    delete_worker_pods: bool = True
    delete_worker_pods_on_failure: bool = False
    worker_pods_creation_batch_size: int = DEFAULT_CREATION_BATCH_SIZE
    fatal_container_reasons: frozenset[str] = field(default_factory=lambda: frozenset(_split(DEFAULT_FATAL_REASONS)))
    multi_namespace_mode: bool = False
    multi_namespace_mode_namespace_list: tuple[str, ...] = ()
    in_cluster: bool = False
    config_file: str = ""
    cluster_context: str = ""
    task_publish_max_retries: int = DEFAULT_PUBLISH_MAX_RETRIES
    validate_commands: bool = True
    share_local_environment: bool = False
    warm_pool_size: int = 0
    warm_pool_max: int = KUBERNETES_EXECUTOR["warm_pool_max"].default
    warm_pod_idle_seconds: float = KUBERNETES_EXECUTOR["warm_pod_idle_seconds"].default
    warm_pod_service_account: str = KUBERNETES_EXECUTOR["warm_pod_service_account"].default

    @classmethod
    def from_conf(cls) -> "KubeExecutorConfig":
        get = conf.get
        batch = conf.getint(SECTION, "worker_pods_creation_batch_size")
        if batch < 1:
            raise ConfigError(f"[{SECTION}] worker_pods_creation_batch_size must be at least 1, got {batch}")
        retries = conf.getint(SECTION, "task_publish_max_retries")
        if retries < 0:
            raise ConfigError(f"[{SECTION}] task_publish_max_retries must not be negative, got {retries}")
        return cls(
            namespace=conf.getstr(SECTION, "namespace") or DEFAULT_NAMESPACE,
            pod_template_file=conf.getstr(SECTION, "pod_template_file"),
            worker_container_repository=conf.getstr(SECTION, "worker_container_repository"),
            worker_container_tag=conf.getstr(SECTION, "worker_container_tag"),
            delete_worker_pods=get(SECTION, "delete_worker_pods"),
            delete_worker_pods_on_failure=get(SECTION, "delete_worker_pods_on_failure"),
            worker_pods_creation_batch_size=batch,
            fatal_container_reasons=frozenset(_split(
                conf.getstr(SECTION, "worker_pod_pending_fatal_container_state_reasons"))),
            multi_namespace_mode=get(SECTION, "multi_namespace_mode"),
            multi_namespace_mode_namespace_list=tuple(_split(
                conf.getstr(SECTION, "multi_namespace_mode_namespace_list"))),
            in_cluster=get(SECTION, "in_cluster"),
            config_file=conf.getstr(SECTION, "config_file"),
            cluster_context=conf.getstr(SECTION, "cluster_context"),
            task_publish_max_retries=retries,
            validate_commands=get(SECTION, "validate_commands"),
            share_local_environment=get(SECTION, "share_local_environment"),
            warm_pool_size=max(0, conf.getint(SECTION, "warm_pool_size")),
            warm_pool_max=max(0, conf.getint(SECTION, "warm_pool_max")),
            warm_pod_idle_seconds=conf.getfloat(SECTION, "warm_pod_idle_seconds"),
            warm_pod_service_account=_service_account_name(conf.getstr(SECTION, "warm_pod_service_account")),
        )

    @property
    def worker_image(self) -> str | None:
        if not self.worker_container_repository:
            return None
        tag = self.worker_container_tag
        return f"{self.worker_container_repository}:{tag}" if tag else self.worker_container_repository
