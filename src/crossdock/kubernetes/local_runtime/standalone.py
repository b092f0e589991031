"""The embedded default of the pod path: a local pod runtime when no cluster is configured.

"Configured" means ``[kubernetes_executor] in_cluster``, ``[kubernetes_executor]
config_file`` or ``$KUBECONFIG``. A ``~/.kube/config`` alone does not count: ``crossdock
standalone`` on a laptop must never start pods on whatever cluster that file happens to
point at. Set ``config_file`` to use a real cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

from crossdock.configuration import conf
from crossdock.kubernetes.local_runtime.container import tie_pods_to_this_process
from crossdock.kubernetes.local_runtime.runtime import LocalRuntime, start_local_runtime
from crossdock.kubernetes.local_runtime.settings import SECTION

CONFIG_FILE_ENV = "CROSSDOCK__KUBERNETES_EXECUTOR__CONFIG_FILE"
SHARE_ENV = "CROSSDOCK__KUBERNETES_EXECUTOR__SHARE_LOCAL_ENVIRONMENT"


def cluster_is_configured() -> bool:
    return (conf.getboolean("kubernetes_executor", "in_cluster")
            or bool(conf.getstr("kubernetes_executor", "config_file"))
            or bool(os.environ.get("KUBECONFIG")))


def start_runtime_unless_configured() -> LocalRuntime | None:
    """Start the local runtime and point the KubernetesExecutor at it; None when a cluster is configured.

    The settings go into the environment (not just this process's config) so that every
    process started from here — Celery workers, pods — sees the same. The runtime lives
    inside this process, and so do its pods: they are stopped when this process ends,
    however it ends (a SIGKILL included), instead of outliving it as an agent's pods do.
    """
    if cluster_is_configured():
        return None
    tie_pods_to_this_process()
    runtime = start_local_runtime(state_dir=Path(conf.getstr(SECTION, "state_dir")))
    os.environ[CONFIG_FILE_ENV] = str(runtime.kubeconfig_path)
    os.environ[SHARE_ENV] = "True"
    conf.reload()
    return runtime
