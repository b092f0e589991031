"""A try queued again while the executor still holds it running: wait a little, then give up.

This happens when a try was ended from outside and its executor has not noticed yet,
or when a state change races a report (Airflow's deferral case). Sending the command
at once would run one try twice; waiting forever would hold the queued command for
good. As Airflow does (``RunningRetryAttemptType``), the command is held back on each
heartbeat for at least :data:`PATIENCE_SECONDS`, tried once more after that, then
dropped with an error: the copy that runs still reports the try's outcome, and one
that never does is what the scheduler's stuck-in-queued timeout is for.
"""

from __future__ import annotations

import time
from typing import Callable

#: Seconds a queued try whose key is still running is held back before it is dropped.
PATIENCE_SECONDS = 10.0


class StillRunningAttempts:
    """The heartbeats a queued try spent waiting for its own key to leave ``running``.

    :param clock: the time source, in seconds (monotonic).
    """

    def __init__(self, *, patience: float = PATIENCE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.patience = patience
        self._clock = clock
        self.first_attempt = clock()
        self.total_tries = 0
        self._tries_after_patience = 0

    @property
    def elapsed(self) -> float:
        return self._clock() - self.first_attempt

    def can_try_again(self) -> bool:
        """Whether to hold the command for another heartbeat (counts this attempt); False: drop it."""
        if self._tries_after_patience:
            return False
        self.total_tries += 1
        if self.elapsed > self.patience:
            self._tries_after_patience += 1
        return True
