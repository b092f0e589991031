"""What the scheduler side and the workers of the Celery path agree on.

The executor publishes and reads outcomes; the worker runs and records them. Neither
needs the other's module for that, only this: the name of the one task crossdock sends,
the failures a worker records for a try, and how a recorded failure reads back. A
failure says by its type whether the try's own code failed or the infrastructure lost
the try (a worker or pool process gone), so the executor never matches message texts
or class names to tell the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossdock.exceptions import CrossdockError

#: Name of the task crossdock sends; fixed so scheduler and workers agree without an import.
EXECUTE_COMMAND_TASK = "crossdock.execute_command"


class TryOutcomeError(CrossdockError):
    """A try's failure as a worker records it in the result backend; the message is the reason."""

    #: True when the try did not fail but was lost with its worker: it is run again, uncharged.
    infrastructure_loss: bool = False


class CommandFailedError(TryOutcomeError):
    """A task command exited non-zero; the message names host, Celery id and reason."""


class TaskLostError(TryOutcomeError):
    """The worker that claimed this try is gone; the try is reported lost, not re-run here."""

    infrastructure_loss = True


@dataclass(frozen=True)
class TryFailure:
    """How a FAILURE or REVOKED result reads for the scheduler."""

    reason: str
    infrastructure_loss: bool = False


def read_failure(state: str, result: Any) -> TryFailure:
    """The reason (one readable line) and kind of a failed or revoked try's stored result.

    ``result`` is what the result backend gives back: the exception Celery rebuilt from
    what the worker stored, or its JSON form when it could not be rebuilt.
    """
    if isinstance(result, TryOutcomeError):
        lost = result.infrastructure_loss
        failure = TryFailure(str(result) or type(result).__name__)
    elif isinstance(result, BaseException):
        lost = _pool_process_lost(result)
        failure = TryFailure(f"{type(result).__name__}: {str(result) or type(result).__name__}")
    elif isinstance(result, dict) and "exc_message" in result:
        message = result.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = " ".join(str(part) for part in message)
        return TryFailure(f"{result.get('exc_type', 'Error')}: {message}")
    elif state == "REVOKED":
        return TryFailure("the celery task was revoked")
    else:
        return TryFailure(f"celery reported {state}: {result!r}")
    return TryFailure(failure.reason, infrastructure_loss=lost and state == "FAILURE")


def _pool_process_lost(error: BaseException) -> bool:
    """Celery's own word for a pool process that died under its try (the worker lives on)."""
    from billiard.exceptions import WorkerLostError

    return isinstance(error, WorkerLostError)
