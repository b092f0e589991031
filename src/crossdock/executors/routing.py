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

``[executor_routing] overflow`` (see :mod:`crossdock.executors.overflow`) may then move a
task elsewhere while the executor it was routed to has a backlog.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Iterable

from crossdock.configuration import ConfigError, conf
from crossdock.executor_names import names_answered_to
from crossdock.executors.overflow import (
    Backlogs, OverflowRule, check_overflow_rules, configured_overflow_rules, first_spill,
)

if TYPE_CHECKING:
    from crossdock.executors.base_executor import BaseExecutor
    from crossdock.models.taskinstance import TaskInstance


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


@dataclass(frozen=True)
class Route:
    """Where one task goes and why: the executor the scheduler hands it to, the name
    recorded on the task instance (a hybrid's child), and the reason shown to users."""

    executor: "BaseExecutor"
    name: str
    reason: str


class ExecutorRouter:
    """The one place a task's executor is decided, once per try, by the scheduler.

    Order: the task's own ``executor=``; then the first ``[executor_routing]`` rule its
    queue matches; then the default executor (the first configured). A hybrid reached
    without a child picks one by its own queue rule (``route_child``). Every name an
    executor answers to — alias, class name, dotted path, a hybrid's children — is
    indexed here and nowhere else.
    """

    def __init__(self, executors: "list[BaseExecutor]", rules: "list[RoutingRule] | None" = None,
                 overflow: "list[OverflowRule] | None" = None):
        if not executors:
            raise ValueError("a scheduler needs at least one executor")
        self.default = executors[0]
        #: name → (executor to hand the task to, name to record for it)
        self._names: dict[str, tuple[BaseExecutor, str]] = {}
        for executor in executors:
            own = executor.name or type(executor).__name__
            dotted = f"{type(executor).__module__}.{type(executor).__name__}"
            children = getattr(executor, "child_executors", {})
            for alias in names_answered_to(executor.name, dotted):
                self._names.setdefault(alias, (executor, own))
            for child in children:
                self._names.setdefault(child, (executor, child))
        self.rules = configured_rules() if rules is None else rules
        check_rules(self.rules, self._names)
        self.overflow_rules = configured_overflow_rules() if overflow is None else overflow
        check_overflow_rules(self.overflow_rules, self._names)

    def route(self, queue: str | None, named: str | None) -> Route | None:
        """The route of a task with this queue and ``executor=``; None for an unknown name."""
        if named:
            target = self._names.get(named)
            if target is None:
                return None
            return self._resolve(target, queue, f"executor={named!r} on the task")
        for rule in self.rules:
            if rule.matches(queue):
                return self._resolve(self._names[rule.executor], queue,
                                     f"queue {queue!r} matched [executor_routing] rule {rule.pattern!r} = {rule.executor}")
        return self._resolve((self.default, self.default.name or type(self.default).__name__), queue,
                             f"queue {queue!r}: no [executor_routing] rule matched, the default executor")

    def overflow(self, route_: Route, queue: str | None, *, overflow: bool | None, pinned: bool,
                 backlogs: Backlogs, now: datetime) -> Route:
        """``route_``, or where the first overflow rule that holds now moves the task instead.

        :param overflow: the task's ``overflow=`` (None when not set).
        :param pinned: the task names its own ``executor=``.
        """
        if not self.overflow_rules:
            return route_

        def target(rule: OverflowRule) -> Route:
            return self._resolve(self._names[rule.target], queue, "")

        spill = first_spill(self.overflow_rules, queue=queue, source=route_.name, overflow=overflow, pinned=pinned,
                            backlogs=backlogs, now=now, lands_on=lambda rule: target(rule).name)
        if spill is None:
            return route_
        rule, held = spill
        moved = target(rule)
        return Route(moved.executor, moved.name, f"overflow: queue {queue!r} {held} on {route_.name} "
                                                 f"(rule {rule.text!r}); {moved.name} instead of {route_.name}")

    def owner_of(self, ti: "TaskInstance") -> "BaseExecutor":
        """The executor holding a try already sent: by the name recorded on it, else by routing."""
        target = self._names.get(ti.executor) if ti.executor else None
        if target is not None:
            return target[0]
        route_ = self.route(ti.queue, None)
        return route_.executor if route_ is not None else self.default

    @staticmethod
    def _resolve(target: "tuple[BaseExecutor, str]", queue: str | None, reason: str) -> Route:
        executor, name = target
        children = getattr(executor, "child_executors", None)
        if children and name not in children:
            name, why = executor.route_child(queue)
            reason = f"{reason}; {why}"
        return Route(executor, name, reason)
