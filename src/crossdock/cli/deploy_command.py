"""``crossdock deploy …``: print the Kubernetes objects that follow from ``[worker_queues]``.

``crossdock deploy workers`` prints one worker Deployment per queue and ``crossdock deploy
keda`` one KEDA ScaledObject per queue, as YAML documents (or one JSON ``List``) for
``kubectl apply -f -`` or a kustomize overlay on the ``deploy/`` base. Nothing printed
holds a secret: the URLs come from the ``crossdock-secrets`` Secret by reference.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from crossdock.cli.definition import ActionCommand, Arg, GroupCommand
from crossdock.cli.errors import CliError

MANIFEST_FORMATS = ("yaml", "json")

_OUTPUT = Arg(("-o", "--output"), {"choices": MANIFEST_FORMATS, "default": "yaml",
                                   "help": "yaml documents or one JSON List (default: yaml)"})
_QUEUE = Arg(("-q", "--queue"), {"action": "append", "metavar": "QUEUE",
                                 "help": "only this queue (repeatable; default: every queue in "
                                         "[worker_queues] queues)"})


def selected_specs(queues: list[str] | None) -> list:
    """The specs of the chosen queues; a queue the config does not list gets the defaults, and a note."""
    from crossdock.monitoring.worker_queues import WorkerQueues

    worker_queues = WorkerQueues.from_config()
    names = queues or worker_queues.names()
    if not names:
        raise CliError("no queues: list them in [worker_queues] queues (or name one with --queue)")
    specs = [worker_queues.spec_for(name) for name in names]
    for spec in specs:
        if not spec.configured:
            print(f"note: queue {spec.name!r} is not in [worker_queues] queues: its default min/max/tasks "
                  f"per worker are used", file=sys.stderr)
    return specs


def print_manifests(objects: list[dict[str, Any]], *, output: str, stream=None) -> None:
    stream = stream or sys.stdout
    if output == "json":
        json.dump({"apiVersion": "v1", "kind": "List", "items": objects}, stream, indent=2)
        stream.write("\n")
        return
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # a label dict used twice is written twice
            return True

    stream.write(yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False))


def workers(args: Any) -> int:
    from crossdock.deploy.worker_manifests import worker_deployments

    objects = worker_deployments(selected_specs(args.queue), secret=args.secret, config_map=args.config_map,
                                 with_replicas=args.with_replicas)
    print_manifests(objects, output=args.output)
    return 0


def keda(args: Any) -> int:
    from crossdock.deploy.keda_manifests import scaled_objects

    if not args.prometheus_url.startswith(("http://", "https://")):
        raise CliError(f"--prometheus-url must start with http:// or https://, got {args.prometheus_url!r}")
    print_manifests(scaled_objects(selected_specs(args.queue), prometheus_url=args.prometheus_url),
                    output=args.output)
    return 0


def _workers_args() -> list[Arg]:
    from crossdock.deploy.references import CONFIG_MAP_NAME, SECRET_NAME

    return [_OUTPUT, _QUEUE,
            Arg(("--secret",), {"default": SECRET_NAME,
                                "help": f"Secret with the broker and result-backend URLs (default: {SECRET_NAME})"}),
            Arg(("--config-map",), {"dest": "config_map", "default": CONFIG_MAP_NAME,
                                    "help": f"ConfigMap holding crossdock.cfg (default: {CONFIG_MAP_NAME})"}),
            Arg(("--with-replicas",), {"action": "store_true", "dest": "with_replicas",
                                       "help": "write spec.replicas = min_workers (leave it out when an "
                                               "autoscaler or KEDA sizes the Deployments)"})]


def _keda_args() -> list[Arg]:
    from crossdock.deploy.references import DEFAULT_PROMETHEUS_URL

    return [_OUTPUT, _QUEUE,
            Arg(("--prometheus-url",), {"dest": "prometheus_url", "default": DEFAULT_PROMETHEUS_URL,
                                        "help": "Prometheus that scrapes the scheduler's metrics "
                                                f"(default: {DEFAULT_PROMETHEUS_URL})"})]


COMMANDS = [GroupCommand("deploy", "Print the Kubernetes objects [worker_queues] calls for", [
    ActionCommand("workers", "One Celery worker Deployment per queue", workers, _workers_args()),
    ActionCommand("keda", "One KEDA ScaledObject per queue, scaling its Deployment by the same formula",
                  keda, _keda_args()),
])]
