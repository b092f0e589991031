"""What an executor reports about one try: a typed event, and the pair Airflow's buffer shows.

Airflow's executors report ``(state, info)`` where ``info`` is whatever the executor
had at hand: an external id, a host name, a dict, a reason string. A reader then has to
guess which, and a failure's kind (the try's own fault, or its worker lost) can only be
carried as a mark on a string. A :class:`TaskEvent` names each of those things as a
field instead. The Airflow pair is derived from it (:meth:`TaskEvent.airflow_info`), so
``event_buffer`` and ``get_event_buffer()`` show exactly the shapes they always did,
and a pair written the Airflow way is read back unchanged by both views.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional

from crossdock.executors.infrastructure_loss import InfrastructureLoss, is_infrastructure_loss
from crossdock.state import TaskInstanceState

#: (state, info): what Airflow's event buffer holds for a key.
EventBufferValueType = tuple[Optional[str], Any]



class _Derived:
    def __repr__(self) -> str:
        return "DERIVED"


#: ``info`` of an event whose Airflow pair is derived from its fields.
DERIVED: Any = _Derived()

#: States that leave a try in flight; any other state is the try's end.
IN_FLIGHT_STATES = frozenset({TaskInstanceState.QUEUED, TaskInstanceState.RUNNING})


@dataclass(frozen=True)
class TaskEvent:
    """One thing an executor learnt about a try.

    :param state: the try's new state (queued, running, success, failed, ...).
    :param external_id: the executor's own name for the try (Celery task id, pod name),
        reported with QUEUED so a scheduler that takes over can adopt the try.
    :param hostname: where the try runs or ran (worker node name, pod name, host).
    :param pid: the try's process id on that host, when the executor knows it.
    :param reason: for a failure, one readable line saying why.
    :param infrastructure_loss: the try did not fail, it was lost with its worker, pod or
        node; the scheduler runs it again without charging the task's retries.
    :param result: a value the try returned (for XCom; nothing reports one yet).
    :param info: the Airflow ``info`` this event shows when it is not derived from the
        fields above: kept verbatim for a pair written the Airflow way, or set by an
        executor whose Airflow-facing info has its own established shape.
    """

    state: Optional[str]
    external_id: Optional[str] = None
    hostname: Optional[str] = None
    pid: Optional[int] = None
    reason: Optional[str] = None
    infrastructure_loss: bool = False
    result: Any = None
    info: Any = field(default=DERIVED, compare=False, repr=False)

    @property
    def is_final(self) -> bool:
        """Whether the try is over (anything but queued and running)."""
        return self.state not in IN_FLIGHT_STATES

    def with_state(self, state: Optional[str]) -> "TaskEvent":
        return self if state == self.state else replace(self, state=state)

    @classmethod
    def from_info(cls, state: Optional[str], info: Any) -> "TaskEvent":
        """The event an Airflow-style ``(state, info)`` pair stands for; ``info`` is kept as given."""
        if isinstance(info, TaskEvent):
            return info.with_state(state)
        fields: dict[str, Any] = {}
        if isinstance(info, dict):
            fields.update(hostname=info.get("hostname"), pid=info.get("pid"),
                          reason=info.get("reason") or info.get("error"))
        elif info is not None:
            if state == TaskInstanceState.QUEUED:
                fields["external_id"] = str(info)
            elif state in (TaskInstanceState.RUNNING, TaskInstanceState.SUCCESS):
                fields["hostname"] = str(info)
            else:
                fields["reason"] = str(info)
        return cls(state, infrastructure_loss=is_infrastructure_loss(info), info=info, **fields)

    def airflow_info(self) -> Any:
        """The ``info`` of Airflow's ``(state, info)`` for this event.

        QUEUED: the external id. RUNNING: a dict of the hostname and pid that are known.
        SUCCESS: that dict, or None when neither is known. Any other state: the reason,
        marked as an :class:`InfrastructureLoss` when the try was lost, not failed.
        """
        if self.info is not DERIVED:
            return self.info
        if self.state == TaskInstanceState.QUEUED:
            return self.external_id
        if self.state in (TaskInstanceState.RUNNING, TaskInstanceState.SUCCESS):
            where = {name: value for name, value in (("hostname", self.hostname), ("pid", self.pid))
                     if value is not None}
            return where if where or self.state == TaskInstanceState.RUNNING else None
        if self.infrastructure_loss:
            return InfrastructureLoss(self.reason or "")
        return self.reason

    def as_pair(self) -> EventBufferValueType:
        """``(state, info)`` as Airflow's event buffer holds it."""
        return self.state, self.airflow_info()
