"""One warning when the broker or result backend becomes unreachable, one when it is back.

A scheduler loop talks to the broker and the backend many times a second; logging every
failed call during an outage buried the logs (thousands of lines in half a minute) and said
nothing the first line had not. An :class:`OutageLog` per executor turns the failures of
one outage into two lines: where it started (with the first error) and how long it lasted
(with how many operations failed meanwhile).
"""

from __future__ import annotations

import logging
import time


class OutageLog:
    """Tracks which services are failing and logs only the start and end of an outage.

    :param log: the executor's logger.
    :param what: how the executor names itself in the lines, e.g. ``"CeleryExecutor"``.
    """

    def __init__(self, log: logging.Logger, *, what: str):
        self.log = log
        self.what = what
        self._down: dict[str, str] = {}
        self._started: float | None = None
        self._failures = 0

    @property
    def in_outage(self) -> bool:
        return bool(self._down)

    def failed(self, service: str, error: str) -> None:
        """Record a failed call to ``service`` (``"broker"``, ``"result backend"``)."""
        self._failures += 1
        if service in self._down:
            return
        first = not self._down
        self._down[service] = error
        if first:
            self._started = time.monotonic()
            self.log.warning("%s: the %s is unreachable (%s); tasks stay queued or tracked and "
                             "further errors are not logged until it is back", self.what, service, error)
        else:
            self.log.debug("%s: the %s is unreachable too: %s", self.what, service, error)

    def ok(self, service: str) -> None:
        """Record a successful call to ``service``; logs the recovery when nothing is down any more."""
        if self._down.pop(service, None) is None or self._down:
            return
        lasted = time.monotonic() - (self._started or time.monotonic())
        self.log.warning("%s: broker and result backend reachable again after %.1f s (%d operations "
                         "failed meanwhile)", self.what, lasted, self._failures)
        self._failures = 0
        self._started = None
