"""Task callbacks, run in the try's own process as Airflow runs them.

``on_execute_callback`` before ``execute``; then, by how the try ended,
``on_success_callback``, ``on_retry_callback`` (the task will be tried again) or
``on_failure_callback`` (it will not). A skipped or rescheduled try calls none of them.
Each callback gets the task's context (with ``exception`` and ``reason`` after a
failure) and at most ``[core] task_callback_timeout`` seconds. A callback that raises or
runs out of time is logged in the task log and changes nothing: the try's state is
decided by the task alone.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from crossdock.configuration import conf
from crossdock.dag.exceptions import NO_RETRY_MARK, AirflowRescheduleException, AirflowSkipException
from crossdock.runner.interrupt import TaskInterrupted, execution_timeout

log = logging.getLogger("crossdock.task")

CALLBACK_NAMES = ("on_execute_callback", "on_success_callback", "on_retry_callback", "on_failure_callback")


def _callables(task: Any, name: str) -> list[Any]:
    value = getattr(task, name, None)
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def has_callbacks(task: Any) -> bool:
    return any(getattr(task, name, None) for name in CALLBACK_NAMES)


def run_callbacks(task: Any, name: str, context: dict[str, Any]) -> None:
    """Call each of the task's (or DAG's) ``name`` callbacks; never raises."""
    limit = conf.getfloat("core", "task_callback_timeout") or None
    owner = f"task {task.task_id}" if getattr(task, "task_id", None) else f"DAG {getattr(task, 'dag_id', '?')}"
    for callback in _callables(task, name):
        label = getattr(callback, "__name__", repr(callback))
        try:
            with execution_timeout(limit):
                callback(context)
        except TaskInterrupted as exc:
            log.error("%s %s of %s did not finish: %s; the state is unchanged", name, label, owner, exc.reason)
        except BaseException:  # noqa: BLE001 - a callback never changes the try's outcome
            log.error("%s %s of %s raised; the state is unchanged:\n%s", name, label, owner,
                      traceback.format_exc().rstrip())


def run_end_callbacks(task: Any, context: dict[str, Any], outcome: Any, error: BaseException | None) -> None:
    """The callback for how the try ended (see the module docstring)."""
    if isinstance(error, (AirflowSkipException, AirflowRescheduleException)):
        return
    if outcome.exit_code == 0:
        run_callbacks(task, "on_success_callback", context)
        return
    context = {**context, "exception": error, "reason": outcome.reason}
    try_number = getattr(context.get("ti"), "try_number", 1)
    retried = NO_RETRY_MARK not in (outcome.reason or "") and try_number <= int(getattr(task, "retries", 0) or 0)
    run_callbacks(task, "on_retry_callback" if retried else "on_failure_callback", context)
