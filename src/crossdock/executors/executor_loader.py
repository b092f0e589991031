"""Executor names → executor classes, and the executors configured in ``[core] executor``.

``[core] executor`` takes a short name (``LocalExecutor``), a dotted path
(``crossdock.executors.local_executor.LocalExecutor``), an ``alias:dotted.path`` pair, or a
comma-separated list of those; the first is the default executor and the others are
chosen per task with ``executor=`` (as Airflow 2.10+ allows).
"""

from __future__ import annotations

import importlib

from crossdock.configuration import ConfigError
from crossdock.executor_names import (  # noqa: F401 - the names are part of this module's API
    CHILD_EXECUTOR_NAMES, EXECUTOR_ALIASES, ExecutorName, known_executor_names, parse_executor_names,
)
from crossdock.executors.base_executor import BaseExecutor


def import_executor_class(name: ExecutorName) -> type[BaseExecutor]:
    module_name, _, class_name = name.module_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"[core] executor: cannot import {name.module_path!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseExecutor)):
        raise ConfigError(f"[core] executor: {name.module_path!r} is not a BaseExecutor subclass")
    return cls


def load_executor(name: ExecutorName) -> BaseExecutor:
    executor = import_executor_class(name)()
    executor.name = name.alias
    return executor


def load_executors(value: str | None = None) -> list[BaseExecutor]:
    """Instances of every configured executor, the default first."""
    return [load_executor(name) for name in parse_executor_names(value)]
