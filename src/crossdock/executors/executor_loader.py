"""Executor names → executor classes, and the executors configured in ``[core] executor``.

``[core] executor`` takes a short name (``LocalExecutor``), a dotted path
(``crossdock.executors.local_executor.LocalExecutor``), an ``alias:dotted.path`` pair, or a
comma-separated list of those; the first is the default executor and the others are
chosen per task with ``executor=`` (as Airflow 2.10+ allows).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from crossdock.configuration import ConfigError, conf
from crossdock.executors.base_executor import BaseExecutor

#: Short names a user may give instead of a dotted path.
EXECUTOR_ALIASES: dict[str, str] = {
    "LocalExecutor": "crossdock.executors.local_executor.LocalExecutor",
    "CeleryExecutor": "crossdock.executors.celery_executor.CeleryExecutor",
    "KubernetesExecutor": "crossdock.executors.kubernetes_executor.KubernetesExecutor",
    "CeleryKubernetesExecutor": "crossdock.executors.celery_kubernetes_executor.CeleryKubernetesExecutor",
}


@dataclass(frozen=True)
class ExecutorName:
    """One configured executor: the name the user wrote and the class path it stands for."""

    alias: str
    module_path: str

    @property
    def class_name(self) -> str:
        return self.module_path.rsplit(".", 1)[-1]


def parse_executor_names(value: str | None = None) -> list[ExecutorName]:
    """The configured executors, validated by name (not yet imported)."""
    raw = conf.getstr("core", "executor") if value is None else value
    names: list[ExecutorName] = []
    for part in (item.strip() for item in raw.split(",")):
        if not part:
            continue
        alias, _, path = part.partition(":") if ":" in part else (part, "", "")
        path = path or EXECUTOR_ALIASES.get(alias) or (alias if "." in alias else "")
        if not path:
            known = ", ".join(EXECUTOR_ALIASES)
            raise ConfigError(f"[core] executor: unknown executor {part!r}; use one of {known} "
                              f"or a dotted path to a BaseExecutor subclass")
        names.append(ExecutorName(alias=alias, module_path=path))
    if not names:
        raise ConfigError("[core] executor is empty; name at least one executor")
    if len({name.alias for name in names}) != len(names):
        raise ConfigError(f"[core] executor names an executor twice: {raw!r}")
    return names


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


#: Names a hybrid executor's children answer to, by the hybrid's class name.
CHILD_EXECUTOR_NAMES = {"CeleryKubernetesExecutor": ("CeleryExecutor", "KubernetesExecutor")}


def known_executor_names(value: str | None = None) -> set[str]:
    """Every name a task's ``executor=`` may use under the current configuration (no imports)."""
    names: set[str] = set()
    for name in parse_executor_names(value):
        names.update({name.alias, name.class_name, name.module_path})
        names.update(CHILD_EXECUTOR_NAMES.get(name.class_name, ()))
    return names
