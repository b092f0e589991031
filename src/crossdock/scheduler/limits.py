"""Concurrency accounting: parallelism, per-DAG max_active_tasks and pool slots.

Counts are kept in memory and changed on every state transition into or out of
queued/running, so checking a limit costs O(1) instead of a COUNT query per task.
"""

from __future__ import annotations

from collections import Counter


class SlotLimits:
    """Occupied slots by DAG and by pool, against their limits."""

    def __init__(self, *, parallelism: int, pool_slots: dict[str, int]):
        self.parallelism = parallelism
        self.pool_slots = dict(pool_slots)
        self.total = 0
        self.by_dag: Counter[str] = Counter()
        self.by_pool: Counter[str] = Counter()

    def occupy(self, dag_id: str, pool: str, slots: int) -> None:
        self.total += 1
        self.by_dag[dag_id] += 1
        self.by_pool[pool] += slots

    def release(self, dag_id: str, pool: str, slots: int) -> None:
        self.total -= 1
        self.by_dag[dag_id] -= 1
        self.by_pool[pool] -= slots

    def refuse_reason(self, *, dag_id: str, max_active_tasks: int, pool: str, slots: int) -> str | None:
        """Why a task cannot take a slot now, or None when it can."""
        if self.total >= self.parallelism:
            return "parallelism"
        if self.by_dag[dag_id] >= max_active_tasks:
            return "dag"
        capacity = self.pool_slots.get(pool)
        if capacity is None:
            return "unknown_pool"
        if self.by_pool[pool] + slots > capacity:
            return "pool"
        return None
