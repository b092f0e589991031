"""How a task's effective priority is computed from the weights around it.

``downstream`` (the default) makes a task as urgent as everything waiting on it, so
long chains start early; ``upstream`` favours tasks that finish work already begun;
``absolute`` uses the task's own weight alone.
"""

from __future__ import annotations

from enum import Enum


class WeightRule(str, Enum):
    DOWNSTREAM = "downstream"
    UPSTREAM = "upstream"
    ABSOLUTE = "absolute"

    def __str__(self) -> str:
        return self.value


WEIGHT_RULES: frozenset[str] = frozenset(rule.value for rule in WeightRule)
