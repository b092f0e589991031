"""The one buffer of events an executor keeps for the scheduler, typed inside, Airflow outside.

Each key holds one :class:`~crossdock.executors.task_event.TaskEvent`. Read as a
mapping (``executor.event_buffer[key]``, ``.items()``, ``get_event_buffer()``) it shows
Airflow's ``(state, info)`` pairs; a pair assigned the Airflow way
(``executor.event_buffer[key] = (state, info)``, as Airflow's own tests do) is stored
as the event it stands for. The scheduler pops the typed events themselves
(:meth:`EventBuffer.pop_events`), so nothing is kept twice and the two views never
disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from crossdock.executors.task_event import EventBufferValueType, TaskEvent
from crossdock.models.taskinstancekey import TaskInstanceKey


class EventBuffer(MutableMapping):
    """Events by task instance key; the mapping view is Airflow's ``(state, info)``."""

    def __init__(self, pairs: Mapping[TaskInstanceKey, Any] | Iterable[tuple[TaskInstanceKey, Any]] = ()):
        self._events: dict[TaskInstanceKey, TaskEvent] = {}
        self.update(pairs)

    # -- the Airflow view ------------------------------------------------------------
    def __getitem__(self, key: TaskInstanceKey) -> EventBufferValueType:
        return self._events[key].as_pair()

    def __setitem__(self, key: TaskInstanceKey, value: TaskEvent | EventBufferValueType) -> None:
        if not isinstance(value, TaskEvent):
            state, info = value
            value = TaskEvent.from_info(state, info)
        self._events[key] = value

    def __delitem__(self, key: TaskInstanceKey) -> None:
        del self._events[key]

    def __contains__(self, key: object) -> bool:
        return key in self._events

    def __iter__(self) -> Iterator[TaskInstanceKey]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __repr__(self) -> str:
        return f"EventBuffer({dict(self.items())!r})"

    def pop_pairs(self, dag_ids: Iterable[str] | None = None) -> dict[TaskInstanceKey, EventBufferValueType]:
        """Remove and return the events of ``dag_ids`` (all when None) as Airflow pairs."""
        return {key: event.as_pair() for key, event in self.pop_events(dag_ids).items()}

    # -- the typed view --------------------------------------------------------------
    def event(self, key: TaskInstanceKey) -> TaskEvent | None:
        """The unread event of ``key``, or None."""
        return self._events.get(key)

    def pop_events(self, dag_ids: Iterable[str] | None = None) -> dict[TaskInstanceKey, TaskEvent]:
        """Remove and return the events of ``dag_ids`` (all when None)."""
        if dag_ids is None:
            events, self._events = self._events, {}
            return events
        wanted = set(dag_ids)
        return {key: self._events.pop(key) for key in [key for key in self._events if key.dag_id in wanted]}
