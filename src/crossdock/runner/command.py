"""The one command shape an executor may run: ``["crossdock", "tasks", "run", ...]``.

Commands travel as argv lists, never shell strings (design principle 7). Workers and
pods refuse anything else, so a message injected into a queue cannot make a worker run
an arbitrary program; and the DAG file the command names must lie in the DAGs folder
(:mod:`crossdock.runner.dag_file_policy`), so it cannot make a worker import an
arbitrary file either.
"""

from __future__ import annotations

from crossdock.exceptions import UserFacingError
from crossdock.models.taskinstancekey import TaskInstanceKey

TASK_COMMAND_PREFIX = ("crossdock", "tasks", "run")

#: What a DAG file path starts with in a command when it lies in the dags folder; the
#: runner puts its own dags folder in its place, so a path is valid on any worker.
DAGS_FOLDER_MARKER = "DAGS_FOLDER"


class InvalidCommandError(UserFacingError, ValueError):
    """A command that is not a crossdock task command; nothing was executed."""


def task_run_command(key: TaskInstanceKey, *, subdir: str | None = None) -> list[str]:
    """The argv that runs one try of one task instance.

    ``subdir`` is the DAG file, preferably as ``DAGS_FOLDER/relative/path.py``.
    """
    command = [*TASK_COMMAND_PREFIX, key.dag_id, key.task_id, key.run_id,
               "--try-number", str(key.try_number)]
    if key.map_index >= 0:
        command += ["--map-index", str(key.map_index)]
    if subdir:
        command += ["--subdir", subdir]
    return command


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
    """What a worker may run: a task command, or any argv when ``[core] task_commands_only`` is off.

    Even with the check off a command stays an argv list of strings, never a shell string,
    and one that starts like a task command is checked as one (its DAG file included).
    """
    from crossdock.configuration import conf

    looks_like_task = isinstance(command, (list, tuple)) and tuple(command[:3]) == TASK_COMMAND_PREFIX
    if looks_like_task or conf.getboolean("core", "task_commands_only"):
        validate_task_command(command)
        return
    if (not isinstance(command, (list, tuple)) or not command
            or not all(isinstance(part, str) for part in command)):
        raise InvalidCommandError(f"refusing to run {command!r}: a command must be a non-empty list of strings")
