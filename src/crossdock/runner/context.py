"""What a task's ``execute(context)`` receives.

The runner never reads the metadata database (design principle 1), so everything in the
context comes from the command line and the DAG file: the ids, the try number and the
logical date are passed in by the executor. A command without ``--logical-date`` (one
queued before the option existed) still gets its date, from the run id that carries it.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from crossdock.configuration import conf
from crossdock.models.taskinstancekey import NamedByKey, TaskInstanceKey
from crossdock.runner import macros
from crossdock.runner.command import TaskCommand, parse_logical_date
from crossdock.runner.try_inputs import TryInputs
from crossdock.secrets.context_accessors import ConnectionAccessor, VariableAccessor

if TYPE_CHECKING:
    from crossdock.runner.try_values import TryValues

#: Dates of the DAG's last successful run before the try's (Airflow's context keys).
PREVIOUS_SUCCESS_KEYS = ("prev_data_interval_start_success", "prev_data_interval_end_success",
                         "prev_start_date_success", "prev_end_date_success")
#: The dates of the run a scheduler hands over (others in ``TryInputs.run`` are not dates).
RUN_DATE_KEYS = frozenset({"data_interval_start", "data_interval_end", *PREVIOUS_SUCCESS_KEYS})
#: The run types a crossdock-made run id starts with (Airflow's ``DagRunType`` values).
RUN_TYPES = frozenset({"manual", "scheduled", "backfill", "dataset_triggered"})
#: A run id made by crossdock ends in its logical date: ``manual__2024-01-01T00:00:00+00:00``.
_RUN_ID_DATE = re.compile(r"__(\d{4}-\d{2}-\d{2}T[0-9:.+\-Z]+)$")


@dataclass(frozen=True)
class RuntimeTaskInstance(NamedByKey):
    """The running try as the task sees it (``context["ti"]``): ids, no database row.

    ``ti.dag_id``, ``ti.task_id``, ``ti.run_id``, ``ti.try_number`` and ``ti.map_index``
    are the key's, as on Airflow's task instance.
    """

    key: TaskInstanceKey
    logical_date: datetime | None = None
    hostname: str = ""
    pid: int = field(default_factory=os.getpid)
    values: "TryValues | None" = field(default=None, repr=False, compare=False)

    def xcom_push(self, key: str, value: Any) -> None:
        """Push ``value`` under ``key``; it reaches the database when the try succeeds."""
        self._values().push(key, value)

    def xcom_pull(self, task_ids: Any = None, dag_id: str | None = None, key: str | None = "return_value",
                  include_prior_dates: bool = False, *, map_indexes: Any = None, default: Any = None) -> Any:
        """Airflow's ``xcom_pull``, over the values handed to this try (see :mod:`crossdock.runner.try_values`)."""
        return self._values().pull(task_ids, dag_id=dag_id, key=key, include_prior_dates=include_prior_dates,
                                   map_indexes=map_indexes, default=default)

    def _values(self) -> "TryValues":
        if self.values is None:
            from crossdock.runner.try_values import TryValues

            object.__setattr__(self, "values", TryValues(dag_id=self.dag_id, task_id=self.task_id,
                                                         map_index=self.map_index, inputs=None))
        return self.values


@dataclass(frozen=True)
class RuntimeDagRun:
    """``context["dag_run"]``: the run as the try was handed it (no database row)."""

    dag_id: str
    run_id: str
    logical_date: datetime | None
    conf: dict[str, Any]
    run_type: str | None
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None

    @property
    def execution_date(self) -> datetime | None:
        return self.logical_date


def task_hostname() -> str:
    """``[core] hostname`` when set, else the machine's name (cheap: no DNS lookup)."""
    return conf.getstr("core", "hostname") or socket.gethostname()


def logical_date_from_run_id(run_id: str) -> datetime | None:
    """The logical date a crossdock-made run id carries, or None for a custom run id."""
    match = _RUN_ID_DATE.search(run_id)
    if not match:
        return None
    try:
        return parse_logical_date(match.group(1))
    except ValueError:
        return None


def logical_date_of(command: TaskCommand) -> datetime | None:
    """The try's logical date: the command's ``--logical-date``, else the date in its run id."""
    return command.logical_date or logical_date_from_run_id(command.run_id)


def build_context(*, dag: Any, task: Any, ti: RuntimeTaskInstance, test_mode: bool = False,
                  inputs: TryInputs | None = None) -> dict[str, Any]:
    """The context dict; key names and values are Airflow's so existing callables and templates work.

    Nothing here reads a database: what the try knows of its run beyond its command (the
    data interval, the last successful run's dates, the conf) the scheduler handed over
    with it. Without that (``tasks test``) the data interval is the logical date itself
    and the ``prev_*_success`` keys are None. The date keys (``ds``, ``ts``,
    ``task_instance_key_str`` ...) are present only when the try knows its logical date;
    a template that uses one without it fails naming the key.
    """
    inputs = inputs or TryInputs()
    run_conf = dict(inputs.conf or {})
    params = task_params(dag, task, run_conf)
    facts = {name: parse_logical_date(text) for name, text in inputs.run.items()
             if name in RUN_DATE_KEYS and text}
    interval_start = facts.get("data_interval_start", ti.logical_date)
    interval_end = facts.get("data_interval_end", ti.logical_date)
    dag_run = RuntimeDagRun(dag_id=ti.dag_id, run_id=ti.run_id, logical_date=ti.logical_date, conf=run_conf,
                            run_type=inputs.run_type or run_type_from_run_id(ti.run_id),
                            data_interval_start=interval_start, data_interval_end=interval_end)
    context: dict[str, Any] = {
        "dag": dag,
        "task": task,
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id,
        "try_number": ti.try_number,
        "map_index": ti.map_index,
        "logical_date": ti.logical_date,
        "execution_date": ti.logical_date,
        "data_interval_start": interval_start,
        "data_interval_end": interval_end,
        **{name: facts.get(name) for name in PREVIOUS_SUCCESS_KEYS},
        "params": params,
        "ti": ti,
        "task_instance": ti,
        "dag_run": dag_run,
        "var": VariableAccessor(),
        "conn": ConnectionAccessor(),
        "macros": macros,
        "inlets": [],
        "outlets": [],
        "test_mode": test_mode,
        "conf": conf,
    }
    if ti.logical_date is not None:
        context.update(date_keys(ti.logical_date))
        context["task_instance_key_str"] = f"{ti.dag_id}__{ti.task_id}__{context['ds_nodash']}"
    return context


def run_type_from_run_id(run_id: str) -> str | None:
    """``manual`` of ``manual__2024-...``: the type a crossdock-made run id starts with."""
    prefix, separator, _ = run_id.partition("__")
    return prefix if separator and prefix in RUN_TYPES else None


def task_params(dag: Any, task: Any, run_conf: Mapping[str, Any]) -> dict[str, Any]:
    """``context["params"]``: the DAG's, then the task's, then the run's conf over them (Airflow's order)."""
    from crossdock.dag.param import resolve_params

    return resolve_params(dag, task, run_conf,
                          conf_overrides=conf.getboolean("core", "dag_run_conf_overrides_params"))


def date_keys(logical_date: datetime) -> dict[str, str]:
    """``ds``, ``ds_nodash``, ``ts``, ``ts_nodash`` and ``ts_nodash_with_tz`` of a logical date."""
    ds = logical_date.date().isoformat()
    ts = logical_date.isoformat()
    return {"ds": ds, "ds_nodash": ds.replace("-", ""), "ts": ts,
            "ts_nodash": logical_date.strftime("%Y%m%dT%H%M%S"),
            "ts_nodash_with_tz": ts.replace("-", "").replace(":", "")}
