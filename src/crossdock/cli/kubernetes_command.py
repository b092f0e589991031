"""``crossdock kubernetes …``: run the local pod runtime (the pods API, a node agent, or both).

The group itself is described where the KubernetesExecutor vends it
(:mod:`crossdock.executors.kubernetes_cli`); this module holds the handler.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from crossdock.cli_definition import GroupCommand
from crossdock.executors.kubernetes_cli import kubernetes_commands


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
