"""The states a task instance and a DAG run move through.

The names and string values are Airflow's, so logs, the CLI and the database read the
same to an Airflow user. Both enums are ``str`` subclasses: a state compares equal to
its string and is stored as that string.
"""

from __future__ import annotations

from enum import Enum


class TaskInstanceState(str, Enum):
    """none → scheduled → queued → running → success | failed | up_for_retry | ..."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"
    UP_FOR_RESCHEDULE = "up_for_reschedule"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    REMOVED = "removed"
    RESTARTING = "restarting"

    def __str__(self) -> str:
        return self.value


class DagRunState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


#: States after which a task instance of this try will not change again.
FINISHED_STATES = frozenset(
    {
        TaskInstanceState.SUCCESS,
        TaskInstanceState.FAILED,
        TaskInstanceState.UPSTREAM_FAILED,
        TaskInstanceState.SKIPPED,
        TaskInstanceState.REMOVED,
    }
)

#: States in which an executor holds the task instance.
EXECUTOR_STATES = frozenset({TaskInstanceState.QUEUED, TaskInstanceState.RUNNING})

#: States that let a downstream task run under the default all_success trigger rule.
DONE_OK_STATES = frozenset({TaskInstanceState.SUCCESS, TaskInstanceState.SKIPPED})
