"""Errors raised while a DAG is written, loaded or run.

Every message names the DAG (and the tasks or file) it is about, because the person
reading it is looking at an import-error list or a task log, not at the code that
raised it.
"""

from __future__ import annotations

from typing import Sequence

from crossdock.exceptions import CrossdockError, UserFacingError


class DagDefinitionError(UserFacingError, ValueError):
    """A DAG or task was declared with a value crossdock cannot accept."""


class DagCycleError(DagDefinitionError):
    """An edge would make the task graph cyclic; ``cycle`` lists the task ids around it."""

    def __init__(self, dag_id: str, cycle: Sequence[str]):
        self.dag_id = dag_id
        self.cycle = list(cycle)
        path = " >> ".join(self.cycle)
        super().__init__(f"DAG {dag_id!r} would contain a cycle: {path}")

    def __reduce__(self):
        return type(self), (self.dag_id, self.cycle)


class DuplicateTaskIdError(DagDefinitionError):
    """Two different tasks of one DAG have the same task_id."""

    def __init__(self, dag_id: str, task_id: str):
        self.dag_id = dag_id
        self.task_id = task_id
        super().__init__(f"DAG {dag_id!r} already has a task with task_id {task_id!r}")

    def __reduce__(self):
        return type(self), (self.dag_id, self.task_id)


class TaskNotFound(UserFacingError, KeyError):
    """A task id that the DAG does not contain."""

    def __init__(self, dag_id: str, task_id: str):
        self.dag_id = dag_id
        self.task_id = task_id
        super().__init__(task_id)

    def __str__(self) -> str:
        # KeyError would show repr(task_id); the full sentence is what users need.
        return f"DAG {self.dag_id!r} has no task {self.task_id!r}"

    def __reduce__(self):
        return type(self), (self.dag_id, self.task_id)


class DagFileError(UserFacingError):
    """A DAG file could not be loaded; ``message`` is the readable reason."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(path, message)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class DagNotFound(UserFacingError, LookupError):
    """No DAG file (or no parsed DAG in the database) defines the requested dag_id.

    One class for the loader and for triggers, so a caller catches "no such DAG" once;
    ``message`` adds where the DAG was looked for.
    """

    def __init__(self, dag_id: str, message: str | None = None):
        self.dag_id = dag_id
        self.message = message or f"DAG {dag_id!r} not found"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return type(self), (self.dag_id, self.message)


class TaskFailure(CrossdockError):
    """A task's own work failed (for example a bash command exited non-zero).

    The runner reports the message as the failure reason of the try; it carries no
    traceback worth showing, unlike an unexpected exception from user code.
    """


class XComError(TaskFailure, UserFacingError):
    """A value could not be pushed or pulled; the message names the task, the key and why."""


class AirflowException(CrossdockError):
    """Airflow's base exception, for DAG code that raises or catches it by that name."""


class AirflowSkipException(AirflowException):
    """Raised by a task to end its try as ``skipped`` (not failed); downstream trigger rules decide the rest."""


class AirflowFailException(AirflowException, TaskFailure):
    """Raised by a task to fail at once, without its retries."""


#: Ends the failure reason of a try that must not be retried (an AirflowFailException);
#: the scheduler reads it from the reason, which every executor carries back.
NO_RETRY_MARK = "(AirflowFailException: not retried)"


class AirflowSensorTimeout(AirflowFailException):
    """A sensor waited past its ``timeout``: it fails without retries, as in Airflow."""


class AirflowRescheduleException(AirflowException):
    """A sensor in ``reschedule`` mode gives its slot back until ``reschedule_date``."""

    def __init__(self, reschedule_date, first_poke=None):
        super().__init__(f"rescheduled to {reschedule_date}")
        self.reschedule_date = reschedule_date
        self.first_poke = first_poke
