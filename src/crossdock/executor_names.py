"""The names ``[core] executor`` may use, read without importing any executor.

This is configuration, not execution: the DAG-file parse checks a task's ``executor=``
against these names, and the parse runs below the executors in the package layering
(it must not import Celery or the Kubernetes client to learn a name). The executor
loader and the router both build on it, so a name means one thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from crossdock.configuration import ConfigError, conf

#: Short names a user may give instead of a dotted path.
EXECUTOR_ALIASES: dict[str, str] = {
    "LocalExecutor": "crossdock.executors.local_executor.LocalExecutor",
    "CeleryExecutor": "crossdock.executors.celery_executor.CeleryExecutor",
    "KubernetesExecutor": "crossdock.executors.kubernetes_executor.KubernetesExecutor",
    "CeleryKubernetesExecutor": "crossdock.executors.celery_kubernetes_executor.CeleryKubernetesExecutor",
}

#: Names a hybrid executor's children answer to, by the hybrid's class name.
CHILD_EXECUTOR_NAMES = {"CeleryKubernetesExecutor": ("CeleryExecutor", "KubernetesExecutor")}


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


def names_answered_to(alias: str | None, dotted_path: str, children: Iterable[str] = ()) -> list[str]:
    """Every name a task's ``executor=`` may use for one executor, its own first.

    ``dotted_path`` is the class's ``module.Class`` path; ``children`` the names of a
    hybrid's child executors, which a task may name too.
    """
    names = [alias, dotted_path.rsplit(".", 1)[-1], dotted_path, *children]
    seen: list[str] = []
    for name in names:
        if name and name not in seen:
            seen.append(name)
    return seen


def known_executor_names(value: str | None = None) -> set[str]:
    """Every name a task's ``executor=`` may use under the current configuration (no imports)."""
    names: set[str] = set()
    for name in parse_executor_names(value):
        names.update(names_answered_to(name.alias, name.module_path, CHILD_EXECUTOR_NAMES.get(name.class_name, ())))
    return names
