"""Which executor a task goes to, by its queue: ``[executor_routing] rules``.

Rules are ``pattern = executor`` pairs checked in order; a pattern is a shell glob
matched against the task's queue (``gpu-*``, ``isolated``). The first match wins; a
queue no rule matches goes to the default. The hybrid executor's own behaviour — the
queue named by ``[celery_kubernetes_executor] kubernetes_queue`` goes to Kubernetes —
is the rule it starts from, so the seed's configuration needs no rules at all::

    [executor_routing]
    rules =
        gpu-* = KubernetesExecutor
        isolated = KubernetesExecutor

(or ``CROSSDOCK__EXECUTOR_ROUTING__RULES="gpu-*=KubernetesExecutor,isolated=KubernetesExecutor"``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Iterable

from crossdock.configuration import ConfigError, conf


@dataclass(frozen=True)
class RoutingRule:
    pattern: str
    executor: str

    def matches(self, queue: str | None) -> bool:
        return fnmatch.fnmatchcase(queue or "", self.pattern)


def parse_rules(text: str) -> list[RoutingRule]:
    """``pattern = executor`` pairs from a newline- or comma-separated string."""
    rules = []
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        pattern, sep, executor = item.partition("=")
        if not sep or not pattern.strip() or not executor.strip():
            raise ConfigError(f"[executor_routing] rules: {item!r} is not 'queue-pattern = executor'")
        rules.append(RoutingRule(pattern.strip(), executor.strip()))
    return rules


def configured_rules() -> list[RoutingRule]:
    return parse_rules(conf.getstr("executor_routing", "rules"))


def check_rules(rules: Iterable[RoutingRule], known: Iterable[str]) -> None:
    """Fail at start-up, naming the rule, when a rule names an executor that is not configured."""
    names = set(known)
    for rule in rules:
        if rule.executor not in names:
            raise ConfigError(f"[executor_routing] rule {rule.pattern!r} = {rule.executor!r} names an executor "
                              f"that is not configured (configured: {', '.join(sorted(names))})")


def route(queue: str | None, rules: Iterable[RoutingRule]) -> str | None:
    """The executor name of the first rule matching ``queue``, or None."""
    for rule in rules:
        if rule.matches(queue):
            return rule.executor
    return None
