"""The local pod runtime: the Kubernetes pods API on 127.0.0.1 and a node agent that runs pods
as local processes, so the KubernetesExecutor and the official client run unchanged with no
cluster. ``start_local_runtime`` starts both; each part also runs alone.
"""

from crossdock.kubernetes.local_runtime.runtime import LocalRuntime, start_local_runtime, start_node_agent

__all__ = ["LocalRuntime", "start_local_runtime", "start_node_agent"]
