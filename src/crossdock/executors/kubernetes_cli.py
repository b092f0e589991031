"""The ``crossdock kubernetes`` group the KubernetesExecutor vends (Airflow's ``get_cli_commands``).

Only the description: the handlers are named by dotted path and live in the CLI
package (:mod:`crossdock.cli.kubernetes_pods_command`, :mod:`crossdock.cli.kubernetes_command`),
which the executors do not import.
"""

from __future__ import annotations

from crossdock.cli_definition import ActionCommand, Arg, GroupCommand

#: ``cleanup-pods`` never deletes a Pending pod younger than this (it may just be pulling an image).
MIN_PENDING_MINUTES_FLOOR = 5
DEFAULT_MIN_PENDING_MINUTES = 30
DEFAULT_OUTPUT_FOLDER = "crossdock-pod-yaml"

LOCAL_RUNTIME_HELP = "Serve the Kubernetes pods API on this machine and run its pods as local processes"
LOCAL_RUNTIME_DESCRIPTION = (
    "Starts the local pods API (HTTPS; a kubeconfig holding its certificate and bearer token is written, "
    "owner-only, so kubectl and the official client can use it) and a node agent that binds pending pods to this machine and runs their `base` container's "
    "command as a local process. --api-only and --agent-only run one part; an agent alone talks to the "
    "API named by --kubeconfig (any API server, a real cluster's included). Stops on SIGINT or SIGTERM."
)

_PODS = "crossdock.cli.kubernetes_pods_command"
_RUNTIME = "crossdock.cli.kubernetes_command"


def kubernetes_pod_commands() -> list[ActionCommand]:
    """The subcommands of the ``kubernetes`` group that deal with worker pods."""
    return [
        ActionCommand(
            name="generate-dag-yaml",
            help="Write the pod YAML each task of a DAG would run in",
            description=("Parses the DAG folder and writes one pod manifest per task of DAG_ID (template, "
                         "pod_override and task command merged, as the KubernetesExecutor would create it) "
                         "into OUTPUT_PATH/DAG_ID/. Nothing is sent to a cluster."),
            func=f"{_PODS}.generate_dag_yaml",
            args=[
                Arg(("dag_id",), {"help": "id of the DAG"}),
                Arg(("--output-path",), {"default": DEFAULT_OUTPUT_FOLDER,
                                         "help": f"folder to write into (default ./{DEFAULT_OUTPUT_FOLDER})"}),
                Arg(("--run-id",), {"default": None, "help": "run id to put in the commands "
                                                             "(default manual__<now>)"}),
            ],
        ),
        ActionCommand(
            name="cleanup-pods",
            help="Delete finished, evicted and long-pending worker pods",
            description=("Deletes the KubernetesExecutor's worker pods in a namespace that are Succeeded, "
                         "Failed or Evicted, and those Pending for longer than --min-pending-minutes "
                         f"(at least {MIN_PENDING_MINUTES_FLOOR}). Warm pods are kept while they wait in a "
                         "scheduler's pool, and deleted as stale once unassigned for longer than any live "
                         "scheduler keeps one ([kubernetes_executor] warm_pod_idle_seconds and a margin). "
                         "The cluster is the one "
                         "[kubernetes_executor] in_cluster / config_file / cluster_context name."),
            func=f"{_PODS}.cleanup_pods",
            args=[
                Arg(("--namespace",), {"default": None,
                                       "help": "namespace to clean (default [kubernetes_executor] namespace)"}),
                Arg(("--min-pending-minutes",), {"type": int, "default": DEFAULT_MIN_PENDING_MINUTES,
                                                 "help": "delete Pending pods older than this many minutes "
                                                         f"(default {DEFAULT_MIN_PENDING_MINUTES}, "
                                                         f"at least {MIN_PENDING_MINUTES_FLOOR})"}),
            ],
        ),
    ]


def kubernetes_commands() -> GroupCommand:
    """The ``kubernetes`` group: the KubernetesExecutor's pod tools and the local pod runtime."""
    return GroupCommand(
        name="kubernetes",
        help="Kubernetes tools: the local pod runtime, pod YAML, pod cleanup",
        subcommands=[
            *kubernetes_pod_commands(),
            ActionCommand(
                name="local-runtime",
                help=LOCAL_RUNTIME_HELP,
                description=LOCAL_RUNTIME_DESCRIPTION,
                func=f"{_RUNTIME}.local_runtime",
                args=[
                    Arg(("--host",), {"default": None, "help": "address to listen on (default 127.0.0.1)"}),
                    Arg(("--port",), {"type": int, "default": None, "help": "API port; 0 picks a free one"}),
                    Arg(("--node-name",), {"default": None, "help": "name of the node the agent registers"}),
                    Arg(("--state-dir",), {"default": None,
                                           "help": "folder for saved pods, pod folders and logs"}),
                    Arg(("--api-only",), {"action": "store_true", "help": "serve the API without a node agent"}),
                    Arg(("--agent-only",), {"action": "store_true",
                                            "help": "run only a node agent against --kubeconfig"}),
                    Arg(("--kubeconfig",), {"default": None,
                                            "help": "API server an --agent-only agent talks to "
                                                    "(default $KUBECONFIG)"}),
                    Arg(("--namespace",), {"default": None,
                                           "help": "agent: only run pods of this namespace (default all)"}),
                    Arg(("--kubeconfig-out",), {"default": None,
                                                "help": "where to write the kubeconfig of the served API"}),
                ],
            ),
        ],
    )
