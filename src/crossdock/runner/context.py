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
from typing import Any

from crossdock.configuration import conf
from crossdock.models.taskinstancekey import NamedByKey, TaskInstanceKey
from crossdock.runner import macros
from crossdock.runner.command import TaskCommand, parse_logical_date

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


def build_context(*, dag: Any, task: Any, ti: RuntimeTaskInstance, test_mode: bool = False) -> dict[str, Any]:
    """The context dict; key names and values are Airflow's so existing callables and templates work.

    Nothing here reads a database, so there is no previous run to look at: the data
    interval is the logical date itself (``data_interval_start == data_interval_end ==
    logical_date``), where Airflow would ask the timetable. The date keys (``ds``,
    ``ts``, ``task_instance_key_str`` ...) are present only when the try knows its
    logical date; a template that uses one without it fails naming the key.
    """
    params: dict[str, Any] = {}
    for owner in (dag, task):
        values = getattr(owner, "params", None)
        if isinstance(values, Mapping):
            params.update(values)
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
        "data_interval_start": ti.logical_date,
        "data_interval_end": ti.logical_date,
        "params": params,
        "ti": ti,
        "task_instance": ti,
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


def date_keys(logical_date: datetime) -> dict[str, str]:
    """``ds``, ``ds_nodash``, ``ts``, ``ts_nodash`` and ``ts_nodash_with_tz`` of a logical date."""
    ds = logical_date.date().isoformat()
    ts = logical_date.isoformat()
    return {"ds": ds, "ds_nodash": ds.replace("-", ""), "ts": ts,
            "ts_nodash": logical_date.strftime("%Y%m%dT%H%M%S"),
            "ts_nodash_with_tz": ts.replace("-", "").replace(":", "")}
