"""Queues as the queue monitor sees them: what waits where, who consumes it, workers wanted.

A long-lived caller (the web server) passes its own started
:class:`~crossdock.monitoring.queue_monitor.QueueMonitor` and gets its last snapshot
without waiting on a broker; without one, the numbers are read once, now.
"""

from __future__ import annotations

from typing import Any

from crossdock.database import ensure_migrated
from crossdock.operations.reads.paging import DEFAULT_LIMIT, checked_page


def list_queues(*, monitor: Any = None, limit: int = DEFAULT_LIMIT, offset: int = 0) -> dict[str, Any]:
    """``{"queues": [QueueStatus.as_json() ...], "total_entries": N, "age_seconds": s}`` by queue name.

    :param monitor: a started queue monitor whose snapshot to use (refreshed now if it has none yet).
    """
    from crossdock.monitoring.queue_monitor import QueueMonitor

    limit, offset = checked_page(limit, offset)
    ensure_migrated()
    if monitor is None:
        statuses, age = QueueMonitor().refresh(), 0.0
    else:
        statuses = monitor.snapshot() or monitor.refresh()
        age = monitor.age_seconds
    return {"queues": [status.as_json() for status in statuses[offset:offset + limit]],
            "total_entries": len(statuses), "age_seconds": age}
