"""Whether a task may run, given its upstream tasks' states (Airflow's trigger rules).

Returns one of three verdicts so the scheduler can decide in one pass: run it, never
run it (and with which state), or wait for more upstream tasks to finish. The rules and
the order in which they decide are Airflow 2.x's (``TriggerRuleDep``): a rule that can
no longer be met decides at once, without waiting for the other upstream tasks (an
``all_success`` task is ``upstream_failed`` as soon as one upstream fails).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, NamedTuple

from crossdock.exceptions import CrossdockError
from crossdock.state import TaskInstanceState as S

WAIT = "wait"
RUN = "run"

_FINISHED_UPSTREAM = {S.SUCCESS, S.FAILED, S.UPSTREAM_FAILED, S.SKIPPED, S.REMOVED}


class UnknownTriggerRule(CrossdockError, ValueError):
    """A rule no DAG could have been written with (a corrupt or foreign serialized DAG)."""


class Upstream(NamedTuple):
    """Counts of the upstream tasks' states that the rules read."""

    total: int
    success: int
    skipped: int  # skipped or removed
    failed: int  # failed or upstream_failed
    done: int

    @property
    def all_done(self) -> bool:
        return self.done == self.total


def _all_success(up: Upstream) -> str:
    if up.failed:
        return S.UPSTREAM_FAILED
    if up.skipped:
        return S.SKIPPED
    return RUN if up.all_done else WAIT


def _all_failed(up: Upstream) -> str:
    if up.success or up.skipped:
        return S.SKIPPED
    return RUN if up.all_done else WAIT


def _all_done(up: Upstream) -> str:
    return RUN if up.all_done else WAIT


def _all_skipped(up: Upstream) -> str:
    if up.success or up.failed:
        return S.SKIPPED
    return RUN if up.all_done else WAIT


def _one_success(up: Upstream) -> str:
    if up.success:
        return RUN
    if not up.all_done:
        return WAIT
    return S.UPSTREAM_FAILED if up.failed else S.SKIPPED


def _one_failed(up: Upstream) -> str:
    if up.failed:
        return RUN
    return S.SKIPPED if up.all_done else WAIT


def _one_done(up: Upstream) -> str:
    if up.success or up.failed:
        return RUN
    return S.SKIPPED if up.all_done else WAIT


def _none_failed(up: Upstream) -> str:
    if up.failed:
        return S.UPSTREAM_FAILED
    return RUN if up.all_done else WAIT


def _none_failed_min_one_success(up: Upstream) -> str:
    if up.failed:
        return S.UPSTREAM_FAILED
    if not up.all_done:
        return WAIT
    return RUN if up.success else S.SKIPPED


def _none_skipped(up: Upstream) -> str:
    if up.skipped:
        return S.SKIPPED
    return RUN if up.all_done else WAIT


def _always(up: Upstream) -> str:
    return RUN


RULES: dict[str, Callable[[Upstream], str]] = {
    "all_success": _all_success, "all_failed": _all_failed, "all_done": _all_done,
    "all_skipped": _all_skipped, "one_success": _one_success, "one_failed": _one_failed,
    "one_done": _one_done, "none_failed": _none_failed,
    "none_failed_min_one_success": _none_failed_min_one_success, "none_skipped": _none_skipped,
    "always": _always,
}


def count_upstream(upstream_states: Iterable[str | None]) -> Upstream:
    states = Counter(upstream_states)
    return Upstream(
        total=sum(states.values()),
        success=states[S.SUCCESS],
        skipped=states[S.SKIPPED] + states[S.REMOVED],
        failed=states[S.FAILED] + states[S.UPSTREAM_FAILED],
        done=sum(count for state, count in states.items() if state in _FINISHED_UPSTREAM))


def evaluate(trigger_rule: str, upstream_states: Iterable[str | None]) -> str:
    """RUN, WAIT, or the state the task gets without running (upstream_failed / skipped)."""
    rule = RULES.get(str(trigger_rule))
    if rule is None:
        raise UnknownTriggerRule(f"unknown trigger rule {trigger_rule!r}")
    up = count_upstream(upstream_states)
    if up.total == 0:
        return RUN
    return rule(up)
