"""How Airflow's ``(state, info)`` view marks a failure that was the infrastructure's, not the task's.

A try whose worker, node or pod vanished under it did not fail: nothing it ran said so.
Airflow charges such a try to the task's retries (a task with ``retries=0`` fails); crossdock
does not (DESIGN.md, principle 10): the scheduler runs the task again with its retry budget
untouched, as it already does for a try that was stuck in queued.

Executors say so with the typed ``TaskEvent.infrastructure_loss``; this module is the
mark that field becomes in the Airflow view, where the reason must stay a ``str`` so
that every reader of event reasons keeps working.
"""

from __future__ import annotations

from typing import Any


class InfrastructureLoss(str):
    """A failure reason saying the try was lost with its worker or node, not failed by its code."""

    infrastructure_loss = True


def is_infrastructure_loss(info: Any) -> bool:
    """Whether an executor event's info marks the failure as an infrastructure loss."""
    if isinstance(info, dict):
        return bool(info.get("infrastructure_loss"))
    return bool(getattr(info, "infrastructure_loss", False))
