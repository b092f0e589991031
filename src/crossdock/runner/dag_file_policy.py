"""Which DAG files a ``crossdock tasks run`` command may load: only those in the DAGs folder.

A task command names its DAG file with ``--subdir``; loading that file *is* running its
code. Whoever can put a message on a Celery queue (or a pod in the pods API) could
otherwise name any file on the machine and have a worker import it. So before anything
is imported the file is resolved exactly as the runner resolves it (``DAGS_FOLDER/…``,
a relative path, ``..`` segments) and then with every symlink followed, and it must lie
inside this process's ``[core] dags_folder`` (or crossdock's example DAGs when
``[core] load_examples`` is on). Anything else is refused.

The same parser as the runner's reads the arguments, so the check and the runner can
never disagree about which ``--subdir`` is meant (abbreviations and ``--subdir=x``
included). A command whose arguments do not parse is refused as well: the runner
would reject it anyway, and a check that says "not understood, allowed" is no check.
"""

from __future__ import annotations

import os
from typing import Sequence

from crossdock.exceptions import UserFacingError


class DagFileNotAllowed(UserFacingError, ValueError):
    """The DAG file of a task command lies outside the allowed folders; nothing was imported."""


#: Resolved roots by (configured dags_folder, load_examples): each try checks its command
#: several times on its way to a fork, and resolving the folder is most of the cost.
_roots_cache: dict[tuple[str, bool], list[str]] = {}


def allowed_dag_roots() -> list[str]:
    """The folders (symlinks resolved) whose files a task command may load."""
    from crossdock.configuration import conf

    setting = (conf.getstr("core", "dags_folder"), conf.getboolean("core", "load_examples"))
    roots = _roots_cache.get(setting)
    if roots is None:
        roots = [os.path.realpath(os.path.expanduser(setting[0]))]
        if setting[1]:
            from crossdock.dag.loader import EXAMPLE_DAGS_FOLDER

            roots.append(os.path.realpath(EXAMPLE_DAGS_FOLDER))
        if len(_roots_cache) > 16:  # tests and reloads change the setting; keep it small
            _roots_cache.clear()
        _roots_cache[setting] = roots
    return roots


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # relative/absolute mix or different drives
        return False


def check_subdir_allowed(subdir: str | None) -> str:
    """The resolved location of ``subdir``; raise :class:`DagFileNotAllowed` if outside the roots.

    No ``--subdir`` means the whole DAGs folder, which is always allowed.
    """
    from crossdock.dag.loader import resolve_subdir

    location = resolve_subdir(subdir)
    real = os.path.realpath(location)
    roots = allowed_dag_roots()
    if any(_inside(real, root) for root in roots):
        return real
    where = f"{subdir!r}" if location == subdir else f"{subdir!r} ({location})"
    if real != location:
        where += f", a symlink to {real},"
    raise DagFileNotAllowed(f"DAG file {where} is outside the DAGs folder {roots[0]}; only DAG files "
                            f"inside it are run")


def check_task_command_dag_file(command: Sequence[str]) -> None:
    """Raise :class:`DagFileNotAllowed` unless the ``--subdir`` of ``command`` is allowed.

    ``command`` is a whole ``["crossdock", "tasks", "run", …]`` argv whose shape was
    already checked.
    """
    from crossdock.runner.command import UsageError, parse_task_command

    try:
        task_try = parse_task_command(command)
    except UsageError as exc:
        raise DagFileNotAllowed(f"its arguments do not parse: {exc}") from None
    check_subdir_allowed(task_try.subdir)
