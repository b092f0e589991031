"""The key that names one try of one task instance, everywhere an executor sees it."""

from __future__ import annotations

import operator
from typing import NamedTuple


class TaskInstanceKey(NamedTuple):
    """dag_id, task_id, run_id, try_number and map_index (-1 for an unmapped task).

    A NamedTuple, so it is hashable, ordered field by field and cheap to build; it
    crosses process boundaries as a plain tuple (JSON list) and comes back with
    ``TaskInstanceKey(*values)``.
    """

    dag_id: str
    task_id: str
    run_id: str
    try_number: int = 1
    map_index: int = -1

    @property
    def primary(self) -> tuple[str, str, str, int]:
        """The task instance this try belongs to: the key without its try number."""
        return self.dag_id, self.task_id, self.run_id, self.map_index

    @property
    def reduced(self) -> "TaskInstanceKey":
        """The key with try_number decreased by one, never below zero (Airflow's meaning)."""
        return self._replace(try_number=max(0, self.try_number - 1))

    def with_try_number(self, try_number: int) -> "TaskInstanceKey":
        """The same task instance at another try."""
        return self._replace(try_number=try_number)


class NamedByKey:
    """``dag_id``, ``task_id``, ``run_id``, ``try_number`` and ``map_index`` read from ``self.key``.

    For the records that describe one try — a parsed task command, the ``ti`` a running
    task sees — so the five ids are kept once, in the key, instead of as fields each
    record repeats and converts back and forth.
    """

    __slots__ = ()
    key: TaskInstanceKey


for _field in TaskInstanceKey._fields:
    setattr(NamedByKey, _field, property(operator.attrgetter(f"key.{_field}"), doc=f"``key.{_field}``"))
del _field
