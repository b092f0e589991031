"""The task command: ``["crossdock", "tasks", "run", ...]``, built, parsed and checked here only.

An executor sends one try as this argv; the runner reads it back. Both sides use this
module, so what one builds the other parses the same way: :func:`task_run_command`
builds it, :func:`parse_task_command` reads it into a :class:`TaskCommand`.

Commands travel as argv lists, never shell strings (design principle 7). Workers and
pods refuse anything else, so a message injected into a queue cannot make a worker run
an arbitrary program; and the DAG file the command names must lie in the DAGs folder
(:mod:`crossdock.runner.dag_file_policy`), so it cannot make a worker import an
arbitrary file either.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from crossdock.exceptions import UserFacingError
from crossdock.models.taskinstancekey import NamedByKey, TaskInstanceKey

TASK_COMMAND_PREFIX = ("crossdock", "tasks", "run")


class InvalidCommandError(UserFacingError, ValueError):
    """A command that is not a crossdock task command; nothing was executed."""


class UsageError(UserFacingError):
    """The arguments of a task command are wrong; the runner exits 2 without running anything."""


@dataclass(frozen=True)
class TaskCommand(NamedByKey):
    """One try as a task command names it; its ids are the key's (``command.dag_id`` …).

    :param subdir: the DAG file or folder (``DAGS_FOLDER/...`` inside the DAGs folder);
        None for the whole DAGs folder.
    :param logical_date: the run's logical date when the command carries it; None when
        it does not (a command built before ``--logical-date`` existed, or a custom run).
    :param inputs: the ``--inputs`` word (the run's conf and the values the try may pull,
        see :mod:`crossdock.runner.try_inputs`), still encoded; None when there is none.
    """

    key: TaskInstanceKey
    subdir: str | None = None
    logical_date: datetime | None = None
    inputs: str | None = None


# -- building --------------------------------------------------------------------------
def task_run_command(key: TaskInstanceKey, *, subdir: str | None = None,
                     logical_date: datetime | str | None = None, inputs: str | None = None) -> list[str]:
    """The argv that runs one try of one task instance.

    :param subdir: the DAG file, preferably as ``DAGS_FOLDER/relative/path.py``.
    :param logical_date: the run's logical date; the runner then need not work it out
        from the run id (which a custom run id does not carry).
    :param inputs: the encoded handover of :mod:`crossdock.runner.try_inputs`.
    """
    command = [*TASK_COMMAND_PREFIX, key.dag_id, key.task_id, key.run_id,
               "--try-number", str(key.try_number)]
    if key.map_index >= 0:
        command += ["--map-index", str(key.map_index)]
    if subdir:
        command += ["--subdir", subdir]
    if logical_date is not None:
        text = logical_date if isinstance(logical_date, str) else _as_utc(logical_date).isoformat()
        command += ["--logical-date", text]
    if inputs:
        command += ["--inputs", inputs]
    return command


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# -- parsing ---------------------------------------------------------------------------
def parse_task_command(command: Sequence[str]) -> TaskCommand:
    """The try a whole ``crossdock tasks run …`` argv names.

    Raises :class:`InvalidCommandError` for any other command and :class:`UsageError`
    for arguments that do not parse (``--help`` included: a command asks for a try).
    """
    if not isinstance(command, (list, tuple)) or tuple(command[:3]) != TASK_COMMAND_PREFIX:
        raise InvalidCommandError(f"{command!r} is not a 'crossdock tasks run' command")
    return parse_task_run_arguments(command[3:], allow_help=False)


def parse_task_run_arguments(argv: Sequence[str], *, allow_help: bool = True) -> TaskCommand:
    """The try named by what follows ``crossdock tasks run`` (what the runner is given).

    With ``allow_help`` a ``--help`` prints the usage and raises ``SystemExit``, as a
    command line does.
    """
    args = read_arguments(argv, test=False, allow_help=allow_help)
    if args.try_number < 0:
        raise UsageError(f"--try-number must not be negative, got {args.try_number}")
    key = TaskInstanceKey(args.dag_id, args.task_id, args.run_id, args.try_number, args.map_index)
    return TaskCommand(key, subdir=args.subdir, logical_date=logical_date_option(args.logical_date),
                       inputs=args.inputs)


def logical_date_option(text: str | None) -> datetime | None:
    """``--logical-date`` as a datetime (UTC when naive); None when absent."""
    if not text:
        return None
    try:
        return parse_logical_date(text)
    except ValueError:
        raise UsageError(f"--logical-date {text!r} is not an ISO 8601 date") from None


def parse_logical_date(text: str) -> datetime:
    """An ISO 8601 date or datetime; naive values are taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so the runner still writes its failure line."""

    def error(self, message: str):
        raise UsageError(message)


def add_task_run_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``crossdock tasks run`` (the CLI reuses them for ``--help``)."""
    parser.add_argument("dag_id", help="id of the DAG")
    parser.add_argument("task_id", help="id of the task")
    parser.add_argument("run_id", help="id of the DAG run")
    parser.add_argument("--try-number", type=int, default=1, dest="try_number",
                        help="which try this is, from 1 (names the log file)")
    parser.add_argument("--map-index", type=int, default=-1, dest="map_index",
                        help="index of a mapped task instance; -1 for an unmapped task")
    _add_common_arguments(parser)
    return parser


def add_task_test_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``crossdock tasks test``."""
    parser.add_argument("dag_id", help="id of the DAG")
    parser.add_argument("task_id", help="id of the task")
    parser.add_argument("--map-index", type=int, default=-1, dest="map_index",
                        help="index of a mapped task instance; -1 for an unmapped task")
    _add_common_arguments(parser)
    return parser


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subdir", "-S", default=None,
                        help="DAG file or folder to load the DAG from; a leading DAGS_FOLDER "
                             "stands for [core] dags_folder (default: the whole dags folder)")
    parser.add_argument("--logical-date", default=None, dest="logical_date",
                        help="logical date of the run (ISO 8601); default: the date in the run id")
    parser.add_argument("--inputs", default=None, dest="inputs",
                        help="the run's conf and upstream values, as the scheduler encodes them")


def read_arguments(argv: Sequence[str], *, test: bool, allow_help: bool = True) -> argparse.Namespace:
    """The arguments of ``tasks run`` (or ``tasks test``) as argparse would read them."""
    args = _parse_plain(argv, test=test)
    if args is None:
        prog = "crossdock tasks test" if test else "crossdock tasks run"
        parser = _ArgumentParser(prog=prog, add_help=allow_help)
        (add_task_test_arguments if test else add_task_run_arguments)(parser)
        args = parser.parse_args(list(argv))
    return args


#: ``--option value`` pairs the plain form of a command may hold, by destination.
_PLAIN_OPTIONS = {"--try-number": "try_number", "--map-index": "map_index", "--subdir": "subdir",
                  "-S": "subdir", "--logical-date": "logical_date", "--inputs": "inputs"}
_INT_OPTIONS = frozenset({"try_number", "map_index"})
_PLAIN_INT = re.compile(r"-?[0-9]+")


def _parse_plain(argv: Sequence[str], *, test: bool) -> argparse.Namespace | None:
    """The arguments of a command in the plain form :func:`task_run_command` builds, or None.

    Plain: the positionals first, then distinct ``--option value`` pairs. Building an
    ``ArgumentParser`` costs more than a no-op try itself, and a forked try pays for it
    in copied memory pages; so this form is read directly and anything else (``--x=y``,
    abbreviations, ``--help``, a mistake) goes to argparse, which words the error. Both
    give the same result for a plain command (a test holds them to it).
    """
    positionals = 2 if test else 3
    if len(argv) < positionals or (len(argv) - positionals) % 2:
        return None
    values: dict[str, Any] = {"subdir": None, "logical_date": None, "inputs": None, "map_index": -1}
    if not test:
        values["try_number"] = 1
    for index, name in enumerate(("dag_id", "task_id", "run_id")[:positionals]):
        if argv[index].startswith("-") or not argv[index]:
            return None
        values[name] = argv[index]
    seen = set()
    for index in range(positionals, len(argv), 2):
        option, value = argv[index], argv[index + 1]
        destination = _PLAIN_OPTIONS.get(option)
        if destination is None or destination in seen or destination not in values:
            return None
        seen.add(destination)
        if destination in _INT_OPTIONS:
            if not _PLAIN_INT.fullmatch(value):
                return None
            values[destination] = int(value)
        elif value.startswith("-") or not value:
            return None
        else:
            values[destination] = value
    return argparse.Namespace(**values)


# -- checking --------------------------------------------------------------------------
def validate_task_command(command) -> None:
    """Raise :class:`InvalidCommandError` unless ``command`` is a crossdock task command.

    That is: an argv list ``crossdock tasks run DAG_ID TASK_ID RUN_ID …`` whose arguments
    parse and whose DAG file resolves inside the DAGs folder. Nothing is imported from
    the DAG file before this passes.
    """
    if not isinstance(command, (list, tuple)) or not all(isinstance(part, str) for part in command):
        raise InvalidCommandError(
            f"refusing to run {command!r}: a command must be a list of strings, "
            f"not {type(command).__name__}")
    if tuple(command[:3]) != TASK_COMMAND_PREFIX or len(command) < 6:
        raise InvalidCommandError(
            f"refusing to run {list(command)!r}: only 'crossdock tasks run DAG_ID TASK_ID RUN_ID ...' "
            f"commands are executed")
    from crossdock.runner.dag_file_policy import DagFileNotAllowed, check_task_command_dag_file

    try:
        check_task_command_dag_file(command)
    except DagFileNotAllowed as exc:
        raise InvalidCommandError(f"refusing to run {list(command)!r}: {exc}") from None


def is_task_command(command) -> bool:
    try:
        validate_task_command(command)
    except InvalidCommandError:
        return False
    return True


def check_command_allowed(command) -> None:
    """The command policy: a task command, or any argv when ``[core] task_commands_only`` is off.

    Every executor applies it before sending a command, and a Celery worker again on
    receipt. Even with the check off a command stays an argv list of strings, never a
    shell string, and one that starts like a task command is checked as one (its DAG
    file included).
    """
    from crossdock.configuration import conf

    looks_like_task = isinstance(command, (list, tuple)) and tuple(command[:3]) == TASK_COMMAND_PREFIX
    if looks_like_task or conf.getboolean("core", "task_commands_only"):
        validate_task_command(command)
        return
    if (not isinstance(command, (list, tuple)) or not command
            or not all(isinstance(part, str) for part in command)):
        raise InvalidCommandError(f"refusing to run {command!r}: a command must be a non-empty list of strings")
