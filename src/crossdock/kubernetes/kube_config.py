"""The ``[kubernetes_executor]`` configuration section, declared beside the code that reads it.

Importing this module registers the section (so ``crossdock config`` lists it and a bad
value fails naming its key); :func:`KubeExecutorConfig.from_conf` reads it once, so the
executor does not re-parse configuration on every loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crossdock.configuration import ConfigError, Option, conf, register_defaults

SECTION = "kubernetes_executor"

DEFAULT_NAMESPACE = "default"
DEFAULT_WORKER_REPOSITORY = "crossdock-worker"
DEFAULT_WORKER_TAG = "latest"
DEFAULT_CREATION_BATCH_SIZE = 16
DEFAULT_PUBLISH_MAX_RETRIES = 3
#: Container reasons of a Pending pod that will never start: fail the try at once.
DEFAULT_FATAL_REASONS = ("CreateContainerConfigError,ErrImagePull,CreateContainerError,"
                         "ImageInspectError,InvalidImageName")

register_defaults(SECTION, {
    "namespace": Option(DEFAULT_NAMESPACE, "str", "Namespace worker pods are created in."),
    "pod_template_file": Option("", "str",
                                "YAML file of the pod every worker pod starts from; empty: a built-in "
                                "pod with one container named 'base'."),
    "worker_container_repository": Option(DEFAULT_WORKER_REPOSITORY, "str",
                                          "Image repository of the base container (unless a "
                                          "pod_override sets an image)."),
    "worker_container_tag": Option(DEFAULT_WORKER_TAG, "str", "Image tag of the base container."),
    "delete_worker_pods": Option(True, "bool", "Delete a worker pod once its task try has finished "
                                               "(its log is saved to the task log first)."),
    "delete_worker_pods_on_failure": Option(False, "bool",
                                            "Also delete pods whose try failed (needs delete_worker_pods)."),
    "worker_pods_creation_batch_size": Option(DEFAULT_CREATION_BATCH_SIZE, "int",
                                              "Most pods created per scheduler loop."),
    "worker_pod_pending_fatal_container_state_reasons": Option(
        DEFAULT_FATAL_REASONS, "str",
        "Comma-separated container waiting reasons that fail a Pending pod's try at once."),
    "multi_namespace_mode": Option(False, "bool",
                                   "Let pod_override choose any namespace and watch pods in all of them."),
    "multi_namespace_mode_namespace_list": Option("", "str",
                                                  "Comma-separated namespaces multi_namespace_mode may use "
                                                  "(watched one by one); empty: all namespaces."),
    "in_cluster": Option(False, "bool", "Use the service account of the pod the scheduler runs in."),
    "config_file": Option("", "str", "Kubeconfig file; empty: $KUBECONFIG or ~/.kube/config."),
    "cluster_context": Option("", "str", "Kubeconfig context; empty: the file's current context."),
    "task_publish_max_retries": Option(DEFAULT_PUBLISH_MAX_RETRIES, "int",
                                       "Retries of a pod creation that failed with 409, 5xx, a quota "
                                       "error or a connection error before the try fails."),
    "validate_commands": Option(True, "bool",
                                "Refuse commands other than 'crossdock tasks run ...' (fail the try, "
                                "create no pod)."),
    "share_local_environment": Option(False, "bool",
                                      "Pods run on this machine (the local pod runtime, or a node agent "
                                      "of ours): give each pod this process's PATH (this install first), "
                                      "PYTHONPATH, VIRTUAL_ENV, CROSSDOCK_HOME, CROSSDOCK_CONFIG, "
                                      "CROSSDOCK__* overrides, dags_folder and base_log_folder."),
})


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


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
        )

    @property
    def worker_image(self) -> str | None:
        if not self.worker_container_repository:
            return None
        tag = self.worker_container_tag
        return f"{self.worker_container_repository}:{tag}" if tag else self.worker_container_repository
