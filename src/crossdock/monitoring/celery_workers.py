"""Which Celery workers consume which queue, and how many free slots they have.

One inspect broadcast per kind of reply. The first (``active_queues``) waits the whole
reply timeout, since nobody knows how many workers there are; it tells how many
answered, so the others (``stats``, ``active``, ``reserved``, ``scheduled``) return as
soon as that many replies are in: a refresh costs about one timeout, not five. A worker
that stopped consuming a queue (a draining worker after ``cancel_consumer``) no longer
lists it, so it is not counted as the queue's worker.
"""

from __future__ import annotations

from typing import Any

from crossdock.monitoring.queue_status import WorkerInfo

#: Seconds each inspect broadcast waits for replies.
INSPECT_TIMEOUT = 1.0

_DETAILS = ("stats", "active", "reserved", "scheduled")


def workers_by_queue(app: Any, *, timeout: float = INSPECT_TIMEOUT) -> dict[str, list[WorkerInfo]]:
    """``queue → workers consuming it``; an empty dict when no worker answered."""
    consuming = app.control.inspect(timeout=timeout).active_queues() or {}
    if not consuming:
        return {}
    inspect = app.control.inspect(timeout=timeout, limit=len(consuming))
    replies = {"active_queues": consuming}
    replies.update({name: (getattr(inspect, name)() or {}) for name in _DETAILS})
    by_queue: dict[str, list[WorkerInfo]] = {}
    for hostname, queues in sorted(replies["active_queues"].items()):
        stats = replies["stats"].get(hostname) or {}
        pool_stats = stats.get("pool") or {}
        concurrency = pool_stats.get("max-concurrency")
        if not isinstance(concurrency, int):
            concurrency = len(pool_stats.get("processes") or ()) or 1
        info = WorkerInfo(hostname=hostname, concurrency=concurrency,
                          active=len(replies["active"].get(hostname) or ()),
                          reserved=len(replies["reserved"].get(hostname) or ()),
                          scheduled=len(replies["scheduled"].get(hostname) or ()))
        for queue in queues or ():
            by_queue.setdefault(queue["name"], []).append(info)
    return by_queue
