"""Overflow: a task spills to another executor while its own executor has a backlog.

``[executor_routing] overflow`` holds rules, one a line or comma-separated::

    [executor_routing]
    overflow =
        default -> KubernetesExecutor when queued > 50 or oldest_wait > 30s
        kubernetes -> CeleryExecutor when pending > 20 and pending_wait >= 2m

A rule is ``<queue glob> -> <executor> when <condition>``; a condition is
``<metric> <op> <number>`` clauses joined by ``and`` (binding first) and ``or``, with
``>``, ``>=``, ``<`` or ``<=``. The metrics describe the backlog of the task's own queue
on the executor the task would go to without overflow — the tries the scheduler handed
to that executor that it has not yet reported running:

``queued`` / ``pending``
    how many there are (``pending`` is the name a pod side uses: pods asked for, not running);
``oldest_wait`` / ``pending_wait``
    seconds the oldest of them has waited (a number, with ``s`` or ``m`` if wanted).

A task moves when a rule matches its queue, the rule's executor is not where it would
go anyway, the condition holds at that moment, and the task is allowed to move:

* ``overflow=True`` on the task: it may move by any rule matching its queue;
* ``overflow=False``: it never moves;
* not set (the default): it moves only by a rule that names its queue exactly (no glob
  characters), unless it names its own ``executor=``, which pins it.

Rules are checked in order and the first whose condition holds wins. The counts come from
the scheduler's own table, once per scheduling step, plus the tries it sends during the
step, so a burst stops filling one side at the limit. Nothing is counted when no rule is
configured (the default).
"""

from __future__ import annotations

import fnmatch
import operator
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable

from crossdock.configuration import ConfigError, conf

OPTION = "[executor_routing] overflow"
COUNT_METRICS = ("queued", "pending")
WAIT_METRICS = ("oldest_wait", "pending_wait")
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_GLOB_CHARACTERS = set("*?[")
_RULE = re.compile(r"^(?P<pattern>\S+)\s*->\s*(?P<target>\S+)\s+when\s+(?P<condition>.+)$")
_CLAUSE = re.compile(r"^(?P<metric>[a-z_]+)\s*(?P<op>>=|<=|>|<)\s*(?P<number>\d+(?:\.\d+)?)(?P<unit>s|m)?$")


@dataclass(frozen=True)
class Clause:
    """One ``metric op number`` comparison; ``limit`` in items or seconds."""

    metric: str
    op: str
    limit: float

    def describe(self, value: float) -> str | None:
        """``queued 61 > 50`` when the clause holds for ``value``, else None."""
        if not COMPARISONS[self.op](value, self.limit):
            return None
        unit = "s" if self.metric in WAIT_METRICS else ""
        return f"{self.metric} {_number(value)}{unit} {self.op} {_number(self.limit)}{unit}"


@dataclass(frozen=True)
class OverflowRule:
    """``pattern -> target when ...``: alternatives (``or``) of clauses that must all hold (``and``)."""

    pattern: str
    target: str
    alternatives: tuple[tuple[Clause, ...], ...]
    text: str

    def matches(self, queue: str | None) -> bool:
        return fnmatch.fnmatchcase(queue or "", self.pattern)

    @property
    def names_queue_exactly(self) -> bool:
        return not (_GLOB_CHARACTERS & set(self.pattern))

    def holds(self, backlog: "Backlog", now: datetime) -> str | None:
        """What made the condition hold (``queued 61 > 50``), or None while it does not."""
        for clauses in self.alternatives:
            held = [clause.describe(backlog.value(clause.metric, now)) for clause in clauses]
            if all(held):
                return " and ".join(held)  # type: ignore[arg-type]
        return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _bad(item: str, problem: str) -> ConfigError:
    return ConfigError(f"{OPTION}: {item!r} {problem}")


def _clause(item: str, text: str) -> Clause:
    found = _CLAUSE.match(text.strip())
    if found is None:
        raise _bad(item, f"has {text.strip()!r}, not '<metric> <op> <number>' (e.g. 'queued > 50')")
    metric, unit = found["metric"], found["unit"]
    if metric not in COUNT_METRICS + WAIT_METRICS:
        raise _bad(item, f"names metric {metric!r}; known: {', '.join(COUNT_METRICS + WAIT_METRICS)}")
    if unit and metric in COUNT_METRICS:
        raise _bad(item, f"gives {metric!r} a unit ({text.strip()!r}); it is a count")
    limit = float(found["number"]) * (60 if unit == "m" else 1)
    return Clause(metric, found["op"], limit)


def parse_overflow_rules(text: str) -> list[OverflowRule]:
    """The rules of a newline- or comma-separated string; a bad one is a one-line ConfigError."""
    rules = []
    for item in text.replace("\n", ",").split(","):
        item = " ".join(item.split())
        if not item:
            continue
        found = _RULE.match(item)
        if found is None:
            raise _bad(item, "is not '<queue glob> -> <executor> when <condition>'")
        alternatives = tuple(
            tuple(_clause(item, part) for part in re.split(r"\s+and\s+", alternative))
            for alternative in re.split(r"\s+or\s+", found["condition"]))
        rules.append(OverflowRule(found["pattern"], found["target"], alternatives, item))
    return rules


def configured_overflow_rules() -> list[OverflowRule]:
    return parse_overflow_rules(conf.getstr("executor_routing", "overflow"))


def check_overflow_rules(rules: Iterable[OverflowRule], known: Iterable[str]) -> None:
    """Fail at start-up, naming the rule, when a rule's executor is not configured."""
    names = set(known)
    for rule in rules:
        if rule.target not in names:
            raise _bad(rule.text, f"names executor {rule.target!r}, which is not configured "
                                  f"(configured: {', '.join(sorted(names))})")


def may_move(rule: OverflowRule, *, overflow: bool | None, pinned: bool) -> bool:
    """Whether a task with this ``overflow=`` (and an ``executor=`` of its own when pinned) may
    move by ``rule``: True by any rule, False never, unset only by a rule naming its queue."""
    if overflow is not None:
        return bool(overflow)
    return rule.names_queue_exactly and not pinned


@dataclass
class Backlog:
    """The tries of one queue on one executor handed over and not yet running."""

    count: int = 0
    oldest: datetime | None = None

    def value(self, metric: str, now: datetime) -> float:
        if metric in COUNT_METRICS:
            return float(self.count)
        if self.oldest is None:
            return 0.0
        return max(0.0, (now - self.oldest).total_seconds())


BacklogEntry = tuple["str | None", "str | None", "datetime | None"]  # (executor name, queue, queued at)


class Backlogs:
    """Backlogs by (executor name, queue), read from ``entries`` on first use and then kept
    up to date with :meth:`add` — one pass over what is queued per scheduling step, at most."""

    def __init__(self, entries: Callable[[], Iterable[BacklogEntry]]):
        self._entries = entries
        self._by_key: dict[tuple[str | None, str | None], Backlog] | None = None

    def _table(self) -> dict[tuple[str | None, str | None], Backlog]:
        if self._by_key is None:
            self._by_key = {}
            for executor, queue, queued_at in self._entries():
                self._count(executor, queue, queued_at)
        return self._by_key

    def _count(self, executor: str | None, queue: str | None, queued_at: datetime | None) -> None:
        backlog = self._by_key.setdefault((executor, queue), Backlog())  # type: ignore[union-attr]
        backlog.count += 1
        if queued_at is not None and (backlog.oldest is None or queued_at < backlog.oldest):
            backlog.oldest = queued_at

    def of(self, executor: str, queue: str | None) -> Backlog:
        return self._table().get((executor, queue)) or Backlog()

    def add(self, executor: str, queue: str | None, queued_at: datetime) -> None:
        """A try just handed to ``executor`` (counted only once the table was read)."""
        if self._by_key is not None:
            self._count(executor, queue, queued_at)


def first_spill(rules: Iterable[OverflowRule], *, queue: str | None, source: str,
                overflow: bool | None, pinned: bool, backlogs: Backlogs, now: datetime,
                lands_on: Callable[[OverflowRule], str] = lambda rule: rule.target,
                ) -> tuple[OverflowRule, str] | None:
    """The first rule that moves a task now and what made it hold, or None.

    :param queue: the task's queue.
    :param source: the executor name the task goes to without overflow.
    :param overflow: the task's ``overflow=`` (None when not set).
    :param pinned: the task names its own ``executor=``.
    :param backlogs: the scheduler's backlogs this step.
    :param lands_on: the executor name a rule's target resolves to (a hybrid's child).
    """
    for rule in rules:
        if not rule.matches(queue) or lands_on(rule) == source or not may_move(rule, overflow=overflow, pinned=pinned):
            continue
        held = rule.holds(backlogs.of(source, queue), now)
        if held is not None:
            return rule, held
    return None
