"""Which Celery workers consume which queue, and how many free slots they have.

One inspect broadcast per kind of reply (``active_queues``, ``stats``, ``active``,
``reserved``, ``scheduled``), sent in parallel so a refresh costs one reply timeout, not
five (on a network broker; the serverless filesystem broker's reply files do not bear
concurrent readers, so there they go one after another). A worker that stopped consuming a queue (a draining worker after
``cancel_consumer``) no longer lists it, so it is not counted as the queue's worker.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from crossdock.monitoring.queue_status import WorkerInfo

#: Seconds each inspect broadcast waits for replies.
INSPECT_TIMEOUT = 1.0

_REPLIES = ("active_queues", "stats", "active", "reserved", "scheduled")


def workers_by_queue(app: Any, *, timeout: float = INSPECT_TIMEOUT) -> dict[str, list[WorkerInfo]]:
    """``queue → workers consuming it``; an empty dict when no worker answered."""
    inspect = app.control.inspect(timeout=timeout)
    if str(app.conf.broker_url).startswith("filesystem:"):
        replies = {name: (getattr(inspect, name)() or {}) for name in _REPLIES}
    else:
        with ThreadPoolExecutor(len(_REPLIES)) as pool:
            futures = {name: pool.submit(getattr(inspect, name)) for name in _REPLIES}
            replies = {name: (future.result() or {}) for name, future in futures.items()}
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
