"""How commands are described, so executors can vend CLI groups (seed: get_cli_commands)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable


@dataclass(frozen=True)
class Arg:
    """One argparse argument: ``flags`` and the keyword arguments of ``add_argument``."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionCommand:
    name: str
    help: str
    func: Callable[[Any], int | None]
    args: Iterable[Arg] = ()
    description: str | None = None


@dataclass(frozen=True)
class GroupCommand:
    name: str
    help: str
    subcommands: Iterable[ActionCommand]
    description: str | None = None


def lazy_load_command(dotted_path: str) -> Callable[[Any], int | None]:
    """A command function imported only when it runs, so ``crossdock --help`` stays fast."""
    module_name, _, attr = dotted_path.rpartition(".")

    def command(args: Any) -> int | None:
        return getattr(importlib.import_module(module_name), attr)(args)

    command.__name__ = attr
    return command
