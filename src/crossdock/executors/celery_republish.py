"""Publishing again the tries a Redis broker lost by coming back empty.

Redis keeps Celery's queues in memory. A Redis that restarts without persistence comes
back with no messages: every try that was published but not yet taken by a worker is
gone, and its task would sit in queued, holding a parallelism slot, until
``[scheduler] task_queued_timeout``. The executor therefore writes a sentinel key into
each Redis it uses (broker and result backend) and checks every
``[celery] broker_loss_check_interval`` seconds that it is still there: one round trip per
server. A missing sentinel means the server lost its data.

What to publish again is decided by the result backend: a try with no record there was
never claimed by a worker. Claims of tries still running may have vanished with the
backend too, so the executor waits ``[celery] republish_grace`` seconds first, in which
every worker writes back the claims (and recent outcomes) of its tries (see
:mod:`crossdock.executors.celery_claim_keeper`). A try published again under the same
Celery id that did run after all finds its claim and is not run twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

#: Seconds the sentinel lives without a check renewing it (a stopped scheduler's key expires).
SENTINEL_TTL = 86400
#: Broker URL schemes whose server may come back empty and that this module can check.
REDIS_SCHEMES = ("redis://", "rediss://")


@dataclass(frozen=True)
class PublishedTry:
    """What it takes to publish a try again, and when it was published."""

    task_id: str
    command: list[str]
    queue: str
    published_at: float


class BrokerLossWatch:
    """Notices a Redis broker or backend that came back empty and names the tries it stranded.

    :param check_interval: seconds between sentinel checks; 0 or less turns the watch off.
    :param grace: seconds between noticing the loss and naming tries to publish again.
    :param timeout: seconds one check may wait on a server.
    """

    def __init__(self, *, check_interval: float, grace: float, timeout: float, log: logging.Logger):
        self.app: Any = None
        self.check_interval = check_interval
        self.grace = grace
        self.timeout = timeout
        self.log = log
        self.sentinel = f"crossdock:executor-sentinel:{uuid.uuid4().hex}"
        #: key -> the try as last published, for every try that has no outcome yet.
        self.published: dict[Any, PublishedTry] = {}
        self._servers: list[tuple[str, Any]] | None = None
        self._armed: set[str] = set()
        self._last_check = 0.0
        #: monotonic time a loss was noticed, while tries wait out the grace.
        self._lost_at: float | None = None
        #: keys whose publishing again failed; tried again on the next call of :meth:`due`.
        self._again: set[Any] = set()

    def record(self, key: Any, task_id: str, command: Iterable[str], queue: str) -> None:
        self.published[key] = PublishedTry(task_id, list(command), queue, time.monotonic())

    def forget(self, key: Any) -> None:
        self.published.pop(key, None)

    # -- checking the servers ------------------------------------------------------------
    def check(self, app: Any) -> list[tuple[str, Exception | None]]:
        """Check the sentinels of ``app``'s servers if due: (service, error or None) per server."""
        if self.check_interval <= 0:
            return []
        if app is not self.app:
            self.close()
            self.app = app
        now = time.monotonic()
        if now - self._last_check < self.check_interval:
            return []
        self._last_check = now
        outcomes: list[tuple[str, Exception | None]] = []
        emptied = []
        for service, client in self._redis_servers():
            try:
                missing = self._renew_sentinel(client)
            except Exception as exc:  # noqa: BLE001 - down: the outage log says so
                outcomes.append((service, exc))
                continue
            outcomes.append((service, None))
            if missing and service in self._armed:
                emptied.append(service)
            self._armed.add(service)
        if emptied:
            self._noticed_loss(" and ".join(emptied))
        return outcomes

    def _renew_sentinel(self, client: Any) -> bool:
        """Set the sentinel (renewing its expiry); True if it was missing."""
        pipe = client.pipeline(transaction=True)
        pipe.set(self.sentinel, b"1", nx=True)
        pipe.expire(self.sentinel, SENTINEL_TTL)
        was_missing, _ = pipe.execute()
        return bool(was_missing)

    def _noticed_loss(self, service: str) -> None:
        waiting = len(self.published)
        if self._lost_at is None:
            self._lost_at = time.monotonic()
        self.log.warning("the Celery %s came back empty (what it held was lost); of the %d tries in flight, "
                         "those no worker claims within %.1f s are published again", service, waiting,
                         self.grace)
        # One line per loss: a broker and backend on one server that restarted are one event.

    def _redis_servers(self) -> list[tuple[str, Any]]:
        if self._servers is None:
            self._servers = []
            broker_url = str(self.app.conf.broker_url or "").split(";")[0].strip()
            if broker_url.startswith(REDIS_SCHEMES):
                import redis

                self._servers.append(("broker", redis.Redis.from_url(
                    broker_url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout)))
            backend = self.app.backend
            if _is_redis_backend(backend):
                self._servers.append(("result backend", backend.client))
        return self._servers

    # -- what to publish again -------------------------------------------------------------
    def due(self, unclaimed: set[Any]) -> list[tuple[Any, PublishedTry]]:
        """Once the grace passed: the tries published before the loss that no worker claimed.

        :param unclaimed: keys whose task id has no record in the result backend now.
        """
        again, self._again = self._again, set()
        if self._lost_at is not None and time.monotonic() - self._lost_at >= self.grace:
            lost_at, self._lost_at = self._lost_at, None
            again.update(key for key, sent in self.published.items() if sent.published_at < lost_at)
        return [(key, self.published[key]) for key in again if key in unclaimed and key in self.published]

    def publish_failed(self, key: Any) -> None:
        """Publishing ``key`` again failed (the broker is down again): offer it next time."""
        self._again.add(key)

    def close(self) -> None:
        for service, client in self._servers or []:
            if service == "broker":
                try:
                    client.close()
                except Exception:  # noqa: BLE001
                    pass
        self._servers = None


def _is_redis_backend(backend: Any) -> bool:
    try:
        from celery.backends.redis import RedisBackend
    except ImportError:
        return False
    return isinstance(backend, RedisBackend)
