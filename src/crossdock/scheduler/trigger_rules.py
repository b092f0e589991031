"""Whether a task may run, given its upstream tasks' states (Airflow's trigger rules).

Returns one of three verdicts so the scheduler can decide in one pass: run it, never
run it (and with which state), or wait for more upstream tasks to finish.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from crossdock.state import TaskInstanceState as S

WAIT = "wait"
RUN = "run"

_FINISHED_UPSTREAM = {S.SUCCESS, S.FAILED, S.UPSTREAM_FAILED, S.SKIPPED, S.REMOVED}
_FAILED = {S.FAILED, S.UPSTREAM_FAILED}


def evaluate(trigger_rule: str, upstream_states: Iterable[str | None]) -> str:
    """RUN, WAIT, or the state the task gets without running (upstream_failed / skipped)."""
    states = Counter(upstream_states)
    total = sum(states.values())
    if total == 0:
        return RUN
    done = sum(count for state, count in states.items() if state in _FINISHED_UPSTREAM)
    success = states[S.SUCCESS]
    skipped = states[S.SKIPPED] + states[S.REMOVED]
    failed = states[S.FAILED] + states[S.UPSTREAM_FAILED]
    all_done = done == total

    if trigger_rule == "all_success":
        if failed:
            return S.UPSTREAM_FAILED
        if not all_done:
            return WAIT
        return S.SKIPPED if skipped else RUN
    if trigger_rule == "all_done":
        return RUN if all_done else WAIT
    if trigger_rule == "all_failed":
        if success or skipped:
            return S.SKIPPED
        return RUN if all_done else WAIT
    if trigger_rule == "one_success":
        if success:
            return RUN
        return S.UPSTREAM_FAILED if all_done and failed else (S.SKIPPED if all_done else WAIT)
    if trigger_rule == "one_failed":
        if failed:
            return RUN
        return S.SKIPPED if all_done else WAIT
    if trigger_rule == "none_failed":
        if failed:
            return S.UPSTREAM_FAILED
        return RUN if all_done else WAIT
    if trigger_rule == "always":
        return RUN
    raise ValueError(f"unknown trigger rule {trigger_rule!r}")
