"""Kubernetes manifests crossdock generates from its configuration (``crossdock deploy``).

The static part of a cluster install is the kustomize base in the repository's ``deploy/``
folder (scheduler, metrics Service, RBAC, config); what depends on ``[worker_queues]`` —
one worker Deployment per queue and, with KEDA, one ScaledObject per queue — is generated
here, so the queue list is written once, in the config, and never copied into YAML by hand.
"""
