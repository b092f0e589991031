"""Sensors: tasks that wait for something, poking it until it is true or time runs out.

``mode="poke"`` waits inside one try (it holds its worker slot or pod all along).
``mode="reschedule"`` ends the try after each unsuccessful poke: the slot or pod is
freed, the scheduler puts the task in ``up_for_reschedule`` and queues it again after
``poke_interval``, without spending a retry. The timeout counts from the first poke in
both modes: the scheduler hands the first poke's time to each rescheduled try (it keeps it
in memory, so a scheduler restart starts the count again).
"""

from __future__ import annotations

import glob
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence

from crossdock.dag.baseoperator import BaseOperator
from crossdock.dag.exceptions import AirflowRescheduleException, AirflowSensorTimeout, AirflowSkipException
from crossdock.dag.python_operator import call_python, set_python_call

log = logging.getLogger("crossdock.task")

#: The key of the first poke's time in what the scheduler hands a rescheduled try.
FIRST_POKE_KEY = "sensor_first_poke"
MODES = ("poke", "reschedule")


@dataclass
class PokeReturnValue:
    """What ``poke`` may return instead of a bool: done or not, and the value to push."""

    is_done: bool
    xcom_value: Any = None

    def __bool__(self) -> bool:
        return self.is_done


def _seconds(value: Any, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"{what} must be a non-negative number of seconds or a timedelta, not {value!r}")
    return float(seconds)


class BaseSensorOperator(BaseOperator):
    """Subclass and implement :meth:`poke`.

    :param poke_interval: seconds (or a timedelta) between pokes.
    :param timeout: seconds (or a timedelta) from the first poke after which the sensor
        fails (without retries), or is skipped with ``soft_fail``.
    :param mode: ``poke`` (wait in the try) or ``reschedule`` (free the slot between pokes).
    :param exponential_backoff: double the wait after each poke (capped by ``max_wait``).
    """

    def __init__(self, task_id: str, *, poke_interval: float | timedelta = 60,
                 timeout: float | timedelta = 7 * 24 * 3600, soft_fail: bool = False, mode: str = "poke",
                 exponential_backoff: bool = False, max_wait: float | timedelta | None = None, **kwargs: Any):
        super().__init__(task_id, **kwargs)
        try:
            self.poke_interval = _seconds(poke_interval, "poke_interval")
            self.timeout = _seconds(timeout, "timeout")
            self.max_wait = _seconds(max_wait, "max_wait") if max_wait is not None else None
        except ValueError as exc:
            raise self._definition_error(str(exc)) from None
        if mode not in MODES:
            raise self._definition_error(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.soft_fail = bool(soft_fail)
        self.mode = mode
        self.exponential_backoff = bool(exponential_backoff)

    def poke(self, context: Mapping[str, Any]) -> bool | PokeReturnValue:
        raise NotImplementedError(f"{self.task_type} does not implement poke()")

    def _interval(self, pokes: int) -> float:
        if not self.exponential_backoff:
            return self.poke_interval
        wait = self.poke_interval * (2 ** min(pokes, 30))
        return min(wait, self.max_wait) if self.max_wait is not None else wait

    def execute(self, context: dict[str, Any]) -> Any:
        now = datetime.now(timezone.utc)
        handed = getattr(getattr(context.get("ti"), "values", None), "inputs", None)
        first_text = handed.run.get(FIRST_POKE_KEY) if handed is not None else None
        first_poke = datetime.fromisoformat(first_text) if first_text else now
        pokes = int(handed.run.get("sensor_pokes", 0)) if handed is not None else 0
        while True:
            result = self.poke(context)
            pokes += 1
            if result:
                log.info("Success criteria met. Exiting.")
                return result.xcom_value if isinstance(result, PokeReturnValue) else None
            waited = (datetime.now(timezone.utc) - first_poke).total_seconds()
            if waited > self.timeout:
                message = f"sensor {self.task_id!r} timed out after {waited:.0f}s (timeout {self.timeout:g}s)"
                if self.soft_fail:
                    raise AirflowSkipException(message)
                raise AirflowSensorTimeout(message)
            interval = self._interval(pokes - 1)
            if self.mode == "reschedule":
                due = datetime.now(timezone.utc) + timedelta(seconds=interval)
                log.info("Rescheduling the sensor to %s", due.isoformat())
                raise AirflowRescheduleException(due, first_poke=first_poke)
            log.info("Poking again in %.1fs", interval)
            time.sleep(interval)


class PythonSensor(BaseSensorOperator):
    """Waits until ``python_callable`` returns something truthy (or a done PokeReturnValue)."""

    template_fields = ("templates_dict", "op_args", "op_kwargs")

    def __init__(self, task_id: str, python_callable: Callable[..., Any] | None = None, *,
                 op_args: Sequence[Any] | None = None, op_kwargs: Mapping[str, Any] | None = None,
                 templates_dict: Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(task_id, **kwargs)
        set_python_call(self, python_callable, op_args, op_kwargs, templates_dict)

    def poke(self, context: Mapping[str, Any]) -> bool | PokeReturnValue:
        result = call_python(self, context)
        return result if isinstance(result, PokeReturnValue) else bool(result)


class BashSensor(BaseSensorOperator):
    """Waits until ``bash_command`` exits 0."""

    template_fields = ("bash_command", "env", "cwd")

    def __init__(self, task_id: str, bash_command: str = "", *, env: Mapping[str, str] | None = None,
                 cwd: str | None = None, **kwargs: Any):
        super().__init__(task_id, **kwargs)
        if not isinstance(bash_command, str) or not bash_command.strip():
            raise self._definition_error(f"bash_command must be a non-empty string, not {bash_command!r}")
        self.bash_command, self.env, self.cwd = bash_command, dict(env) if env else None, cwd

    def poke(self, context: Mapping[str, Any]) -> bool:
        env = {**os.environ, **(self.env or {})}
        completed = subprocess.run(["bash", "-c", self.bash_command], env=env, cwd=self.cwd,
                                   stdin=subprocess.DEVNULL, check=False)
        log.info("Command exited with return code %s", completed.returncode)
        return completed.returncode == 0


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


class DateTimeSensor(BaseSensorOperator):
    """Waits until ``target_time`` (a datetime or an ISO 8601 string, templated)."""

    template_fields = ("target_time",)

    def __init__(self, task_id: str, target_time: datetime | str | None = None, **kwargs: Any):
        super().__init__(task_id, **kwargs)
        if not isinstance(target_time, (datetime, str)):
            raise self._definition_error(f"target_time must be a datetime or ISO 8601 text, not {target_time!r}")
        self.target_time = target_time.isoformat() if isinstance(target_time, datetime) else target_time

    def poke(self, context: Mapping[str, Any]) -> bool:
        target = _aware(datetime.fromisoformat(str(self.target_time)))
        log.info("Checking if the time (%s) has come", target)
        return datetime.now(timezone.utc) >= target


class TimeDeltaSensor(BaseSensorOperator):
    """Waits until ``delta`` after the run's data interval end (Airflow 2's meaning)."""

    def __init__(self, task_id: str, *, delta: timedelta, **kwargs: Any):
        super().__init__(task_id, **kwargs)
        if not isinstance(delta, timedelta):
            raise self._definition_error(f"delta must be a timedelta, not {delta!r}")
        self.delta = delta

    def poke(self, context: Mapping[str, Any]) -> bool:
        end = context.get("data_interval_end") or context.get("logical_date") or datetime.now(timezone.utc)
        target = _aware(end) + self.delta
        log.info("Checking if the time (%s) has come", target)
        return datetime.now(timezone.utc) >= target


class FileSensor(BaseSensorOperator):
    """Waits until a file or folder (a glob pattern, templated) exists."""

    template_fields = ("filepath",)

    def __init__(self, task_id: str, filepath: str = "", *, recursive: bool = False, **kwargs: Any):
        kwargs.pop("fs_conn_id", None)  # Airflow's base-path connection: paths here are absolute
        super().__init__(task_id, **kwargs)
        if not isinstance(filepath, str) or not filepath:
            raise self._definition_error(f"filepath must be a non-empty path, not {filepath!r}")
        self.filepath, self.recursive = filepath, bool(recursive)

    def poke(self, context: Mapping[str, Any]) -> bool:
        log.info("Poking for file %s", self.filepath)
        return bool(glob.glob(self.filepath, recursive=self.recursive))


#: The key of the watched task's state in what the scheduler hands an ExternalTaskSensor.
EXTERNAL_STATE_KEY = "external_state"


class ExternalTaskSensor(BaseSensorOperator):
    """Waits for a task (or, with ``external_task_id=None``, a whole run) of another DAG.

    The try has no database, so the scheduler looks the state up when it queues each try
    (the run of ``external_dag_id`` whose logical date is this run's minus
    ``execution_delta``) and hands it over; the sensor therefore always runs in
    ``reschedule`` mode, poking once per try.

    :param allowed_states: states that end the wait (default ``["success"]``).
    :param failed_states: states that fail the sensor at once (default none).
    """

    def __init__(self, task_id: str, *, external_dag_id: str, external_task_id: str | None = None,
                 allowed_states: Sequence[str] | None = None, failed_states: Sequence[str] | None = None,
                 execution_delta: timedelta | None = None, **kwargs: Any):
        if kwargs.get("mode", "reschedule") != "reschedule":
            log.info("ExternalTaskSensor %s runs in reschedule mode: each try sees the state the "
                     "scheduler read when it queued it", task_id)
        kwargs["mode"] = "reschedule"
        kwargs.setdefault("poke_interval", 30)
        super().__init__(task_id, **kwargs)
        if not isinstance(external_dag_id, str) or not external_dag_id:
            raise self._definition_error("external_dag_id must be a DAG id")
        if execution_delta is not None and not isinstance(execution_delta, timedelta):
            raise self._definition_error(f"execution_delta must be a timedelta, not {execution_delta!r}")
        self.external_dag_id, self.external_task_id = external_dag_id, external_task_id
        self.allowed_states = list(allowed_states or ["success"])
        self.failed_states = list(failed_states or [])
        self.execution_delta = execution_delta

    @property
    def external_watch(self) -> dict[str, Any]:
        """What the scheduler looks up for this sensor (kept in the serialized task)."""
        return {"dag_id": self.external_dag_id, "task_id": self.external_task_id,
                "delta": self.execution_delta.total_seconds() if self.execution_delta else 0.0}

    def poke(self, context: Mapping[str, Any]) -> bool:
        handed = getattr(getattr(context.get("ti"), "values", None), "inputs", None)
        state = handed.run.get(EXTERNAL_STATE_KEY) if handed is not None else None
        what = f"{self.external_dag_id}.{self.external_task_id}" if self.external_task_id else self.external_dag_id
        log.info("Poking for %s: its state is %s", what, state or "unknown (no such run yet)")
        if state in self.failed_states:
            from crossdock.dag.exceptions import AirflowFailException

            if self.soft_fail:
                raise AirflowSkipException(f"{what} is {state}")
            raise AirflowFailException(f"{what} is {state}, one of the sensor's failed_states")
        return state in self.allowed_states
