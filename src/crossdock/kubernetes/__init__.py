"""crossdock's Kubernetes side: the local pod runtime the KubernetesExecutor can run on."""
