"""How a command of ``crossdock`` is described, apart from the code that runs it.

An executor vends its own command group (Airflow's ``get_cli_commands``), yet the
executors must not depend on the CLI package, which depends on them. So the
description lives here, below both: plain data, and a handler named by its dotted path,
imported only when the command runs (which also keeps ``crossdock --help`` fast).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Union

#: What runs a command: the function itself, or ``"package.module.function"``.
Handler = Union[Callable[[Any], Union[int, None]], str]


@dataclass(frozen=True)
class Arg:
    """One argparse argument: ``flags`` and the keyword arguments of ``add_argument``."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionCommand:
    """A command that runs something.

    :param func: the handler, called with the parsed arguments; a dotted path string is
        resolved when the command runs, so describing a command imports nothing of it.
    """

    name: str
    help: str
    func: Handler
    args: Iterable[Arg] = ()
    description: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.func, str):
            object.__setattr__(self, "func", lazy_load_command(self.func))


@dataclass(frozen=True)
class GroupCommand:
    """A command that only groups subcommands (``crossdock celery worker``)."""

    name: str
    help: str
    subcommands: Iterable[ActionCommand]
    description: str | None = None


def lazy_load_command(dotted_path: str) -> Callable[[Any], int | None]:
    """A handler that imports ``dotted_path`` only when it is called."""
    module_name, _, attr = dotted_path.rpartition(".")

    def command(args: Any) -> int | None:
        return getattr(importlib.import_module(module_name), attr)(args)

    command.__name__ = attr
    command.dotted_path = dotted_path  # type: ignore[attr-defined]
    return command
