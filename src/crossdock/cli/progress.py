"""Showing progress while a command waits (``dags trigger --wait``, ``dags backfill``).

On a terminal, one live line rewritten in place (cut to the terminal's width, so it
never wraps and leaves copies behind); otherwise, for logs and pipes, a plain line each
time the text changes, and nothing when it does not.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any, TextIO

#: Order in which states are shown in a progress line; others follow alphabetically.
STATE_ORDER = ("success", "failed", "upstream_failed", "skipped", "running", "queued", "scheduled",
               "up_for_retry", "up_for_reschedule", "none")
#: ANSI: back to the start of the line and erase it.
REWRITE = "\r\x1b[2K"


class ProgressLine:
    """Shows successive progress texts on ``stream``.

    :param live: rewrite one line in place (default: when ``stream`` is a terminal).
    """

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self._last: str | None = None

    def show(self, text: str) -> None:
        if text == self._last:
            return
        self._last = text
        if self.live:
            width = shutil.get_terminal_size().columns
            self.stream.write(REWRITE + (text if len(text) < width else text[:max(1, width - 2)] + "…"))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the live line, so what is printed next starts on a line of its own."""
        if self.live and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()


def state_counts(states: dict[str, int]) -> str:
    """``success 2, running 1, none 3``: the non-zero counts in :data:`STATE_ORDER`."""
    rank = {state: index for index, state in enumerate(STATE_ORDER)}
    ordered = sorted(states.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))
    return ", ".join(f"{state} {count}" for state, count in ordered if count)


def run_progress_text(progress: dict[str, Any]) -> str:
    """One line for :func:`crossdock.operations.progress.run_progress`."""
    head = f"run {progress['run_id']}: {progress['state']}"
    if not progress["total"]:
        return f"{head} (no task instances yet)"
    return f"{head} · tasks {progress['done']}/{progress['total']} done · {state_counts(progress['states'])}"


def backfill_progress_text(progress: dict[str, Any]) -> str:
    """One line for a backfill's progress callback."""
    return (f"backfill of {progress['dag_id']}: runs {progress['done']}/{progress['total']} done · "
            f"{state_counts(progress['states'])}")
