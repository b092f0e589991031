"""``crossdock kubernetes …``: run the local pod runtime (the pods API, a node agent, or both)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from crossdock.cli.definition import ActionCommand, Arg, GroupCommand, lazy_load_command

LOCAL_RUNTIME_HELP = "Serve the Kubernetes pods API on this machine and run its pods as local processes"
LOCAL_RUNTIME_DESCRIPTION = (
    "Starts the local pods API (HTTPS; a kubeconfig holding its certificate and bearer token is written, "
    "owner-only, so kubectl and the official client can use it) and a node agent that binds pending pods to this machine and runs their `base` container's "
    "command as a local process. --api-only and --agent-only run one part; an agent alone talks to the "
    "API named by --kubeconfig (any API server, a real cluster's included). Stops on SIGINT or SIGTERM."
)


def kubernetes_commands() -> GroupCommand:
    """The ``kubernetes`` group: the local pod runtime and the KubernetesExecutor's pod tools."""
    from crossdock.cli.kubernetes_pods_command import kubernetes_pod_commands

    return GroupCommand(
        name="kubernetes",
        help="Kubernetes tools: the local pod runtime, pod YAML, pod cleanup",
        subcommands=[
            *kubernetes_pod_commands(),
            ActionCommand(
                name="local-runtime",
                help=LOCAL_RUNTIME_HELP,
                description=LOCAL_RUNTIME_DESCRIPTION,
                func=lazy_load_command("crossdock.cli.kubernetes_command.local_runtime"),
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


def get_commands() -> list[GroupCommand]:
    """What ``crossdock.cli.main`` adds to the top-level parser."""
    return [kubernetes_commands()]


def local_runtime(args: Any) -> int:
    """Run until signalled; prints where the API is and where its kubeconfig was written."""
    from crossdock.configuration import conf
    from crossdock.kubernetes.local_runtime import start_local_runtime, start_node_agent
    from crossdock.kubernetes.local_runtime.settings import SECTION

    if args.api_only and args.agent_only:
        print("error: --api-only and --agent-only exclude each other", file=sys.stderr)
        return 2
    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG")
    if args.agent_only and not kubeconfig:
        print("error: --agent-only needs --kubeconfig (or $KUBECONFIG) naming the API server", file=sys.stderr)
        return 2
    state_dir = Path(args.state_dir or conf.getstr(SECTION, "state_dir")).expanduser()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if args.agent_only:
        agent = start_node_agent(state_dir=state_dir, kubeconfig=kubeconfig, node_name=args.node_name,
                                 namespace=args.namespace)
        print(f"node agent {agent.node_name} running pods for {kubeconfig}", flush=True)
        stop.wait()
        agent.stop()
        return 0
    port = args.port if args.port is not None else conf.getint(SECTION, "port")
    runtime = start_local_runtime(state_dir=state_dir, port=port, host=args.host, with_agent=not args.api_only,
                                  node_name=args.node_name, kubeconfig_path=args.kubeconfig_out)
    print(f"pods API on {runtime.url}", flush=True)
    print(f"kubeconfig {runtime.kubeconfig_path}", flush=True)
    stop.wait()
    runtime.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A parser for this group alone, so the runtime can run as ``python -m`` too."""
    group = kubernetes_commands()
    parser = argparse.ArgumentParser(prog=f"crossdock {group.name}", description=group.help)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in group.subcommands:
        sub = commands.add_parser(command.name, help=command.help, description=command.description)
        for arg in command.args:
            sub.add_argument(*arg.flags, **arg.kwargs)
        sub.set_defaults(func=command.func)
    return parser


if __name__ == "__main__":
    parsed = build_parser().parse_args()
    sys.exit(parsed.func(parsed) or 0)
