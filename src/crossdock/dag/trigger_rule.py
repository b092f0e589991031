"""When a task may run, given the states of its upstream tasks (Airflow's names)."""

from __future__ import annotations

from enum import Enum


class TriggerRule(str, Enum):
    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_SKIPPED = "all_skipped"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_SKIPPED = "none_skipped"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    ALWAYS = "always"

    def __str__(self) -> str:
        return self.value


#: Every accepted trigger rule string.
TRIGGER_RULES: frozenset[str] = frozenset(rule.value for rule in TriggerRule)
