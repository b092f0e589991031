"""``crossdock``: the command line. Each command group lives in its own module.

Errors a user can fix (any :class:`~crossdock.exceptions.UserFacingError`: bad config,
unreachable database, unknown DAG) print one line and exit 1, or their traceback when
``CROSSDOCK_DEBUG=1``. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from crossdock.cli.definition import ActionCommand, GroupCommand
from crossdock.configuration import ConfigError
from crossdock.exceptions import UserFacingError

#: Modules that define a command list ``COMMANDS`` (top-level ActionCommands and GroupCommands).
COMMAND_MODULES = (
    "crossdock.cli.commands",
    "crossdock.cli.celery_command",
    "crossdock.cli.kubernetes_command",
    "crossdock.cli.deploy_command",
)


def _commands() -> list[ActionCommand | GroupCommand]:
    commands: list[ActionCommand | GroupCommand] = []
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        provided = getattr(module, "COMMANDS", None)
        if provided is None and hasattr(module, "get_commands"):
            provided = module.get_commands()
        if provided is None:
            provided = [value for value in vars(module).values() if isinstance(value, GroupCommand)]
        commands.extend(provided or [])
    return commands


def _add_action(subparsers, command: ActionCommand) -> None:
    parser = subparsers.add_parser(command.name, help=command.help,
                                   description=command.description or command.help)
    for arg in command.args:
        parser.add_argument(*arg.flags, **arg.kwargs)
    parser.set_defaults(func=command.func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossdock",
        description="crossdock: run DAGs of tasks on Celery workers, Kubernetes pods or local processes.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _commands():
        if isinstance(command, GroupCommand):
            group = subparsers.add_parser(command.name, help=command.help,
                                          description=command.description or command.help)
            group_sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
            group.set_defaults(func=None, group_parser=group)
            for sub in command.subcommands:
                _add_action(group_sub, sub)
        else:
            _add_action(subparsers, command)
    return parser


def _configure_logging() -> None:
    level = os.environ.get("CROSSDOCK__LOGGING__LOGGING_LEVEL", "")
    try:
        from crossdock.configuration import conf
        level = level or conf.getstr("logging", "logging_level")
    except ConfigError:
        level = "INFO"
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Migration chatter is noise to a user; crossdock's own messages say what happened.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["tasks", "run"] and not {"-h", "--help"} & set(argv):
        # The hot path of every worker and pod: no parser tree, no logging setup.
        from crossdock.runner.task_runner import run_task

        return run_task(argv[2:])
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        (getattr(args, "group_parser", None) or parser).print_help()
        return 2
    _configure_logging()
    try:
        result = func(args)
    except KeyboardInterrupt:
        return 130
    except UserFacingError as exc:
        # Anything else escapes with its traceback: it is a bug, not the user's to fix.
        if os.environ.get("CROSSDOCK_DEBUG") == "1":
            raise
        print(f"crossdock: error: {exc}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
