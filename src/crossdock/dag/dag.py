"""The DAG: a named set of tasks, the edges between them, and when it runs.

A DAG object lives in user code only: the DAG-file processor turns it into plain JSON
(see :mod:`crossdock.dag.serialization`) and the scheduler never sees the object.
Everything a user can get wrong (ids, schedule, cycles, duplicate tasks) is checked
here, while the DAG is being built, so the error points at the line that caused it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from crossdock.dag.exceptions import (
    DagCycleError,
    DagDefinitionError,
    DuplicateTaskIdError,
    TaskNotFound,
)
from crossdock.dag.param import ParamsDict
from crossdock.dag.schedule import Schedule, normalize_schedule

if TYPE_CHECKING:
    from crossdock.dag.baseoperator import BaseOperator
    from crossdock.dag.task_group import TaskGroup

#: What a dag_id or task_id may look like: it ends up in file names, pod labels and URLs.
ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,250}")
ID_RULE = "1 to 250 characters from letters, digits, '_', '.' and '-'"

_NOTSET: Any = object()

#: DAGs whose ``with`` block is open, innermost last; operators created inside join the last.
_open_dags: list["DAG"] = []
#: Lists that receive every DAG constructed while they are on the stack (the loader's registry).
_collectors: list[list["DAG"]] = []


def check_id(value: object, *, kind: str, dag_id: str | None = None) -> str:
    """Return ``value`` if it is a valid dag_id / task_id, else raise naming it."""
    where = f"DAG {dag_id!r}: " if dag_id else ""
    if not isinstance(value, str):
        raise DagDefinitionError(f"{where}{kind} must be a string, not {type(value).__name__} {value!r}")
    if not ID_PATTERN.fullmatch(value):
        raise DagDefinitionError(f"{where}{kind} {value!r} is invalid: use {ID_RULE}")
    return value


def get_current_dag() -> "DAG | None":
    """The DAG of the innermost open ``with DAG(...)`` block, if any."""
    return _open_dags[-1] if _open_dags else None


@contextmanager
def collect_created_dags() -> Iterator[list["DAG"]]:
    """Yield a list that fills with every DAG constructed inside the block.

    The loader uses this to find DAGs that a file creates but never binds to a
    module-level name (``with DAG(...):`` without ``as``, or DAGs built in a loop).
    """
    created: list[DAG] = []
    _collectors.append(created)
    try:
        yield created
    finally:
        _collectors.remove(created)


def as_utc(value: object, *, what: str) -> datetime | None:
    """A tz-aware UTC datetime; naive values are taken as UTC, a date as its midnight."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=timezone.utc)
    raise DagDefinitionError(f"{what} must be a datetime, not {type(value).__name__} {value!r}")


def _positive_int(value: object, *, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DagDefinitionError(f"{what} must be a whole number of at least 1, not {value!r}")
    return value


def _caller_file() -> str | None:
    """The file of the first frame outside this package: where the DAG was written."""
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "crossdock.dag" and not module.startswith("crossdock.dag."):
            return frame.f_globals.get("__file__") or frame.f_code.co_filename
        frame = frame.f_back
    return None


class DAG:
    """A workflow: tasks, their dependencies, and its schedule.

    :param dag_id: unique name of the DAG (letters, digits, ``_ . -``; at most 250).
    :param schedule: None (only triggered runs), a cron expression, a preset such as
        ``"@daily"``, or a :class:`~datetime.timedelta`.
    :param start_date: first logical date a scheduled run may have; naive means UTC.
        Taken from ``default_args["start_date"]`` when not given.
    :param catchup: create runs for every interval missed since ``start_date``.
    :param default_args: default keyword arguments of the DAG's operators
        (``retries``, ``queue``, ``pool``, ...).
    :param max_active_runs: most runs of this DAG at once; default ``[core] max_active_runs_per_dag``.
    :param max_active_tasks: most running tasks of this DAG at once; default
        ``[core] max_active_tasks_per_dag``.
    :param tags: labels shown by ``crossdock dags list``.
    :param description: one line shown beside the DAG.
    :param doc_md: longer documentation of the DAG, in Markdown (kept with the serialized DAG).
    :param on_success_callback: called when a run succeeds (``on_failure_callback``: fails), in a
        process of its own with the try's environment, never in the scheduler
        (see :mod:`crossdock.runner.dag_callback`).
    :param dagrun_timeout: a run still going this long after it started fails; its unfinished
        tasks are skipped and their running tries stopped (seconds or a timedelta).
    :param params: values handed to every task as ``context["params"]``, each a plain value
        or a :class:`~crossdock.dag.param.Param` with a JSON Schema; a run's conf overrides
        them (``[core] dag_run_conf_overrides_params``). ``default_args["params"]`` is
        merged over them, as in Airflow.
    :param schedule_interval: the name Airflow used for ``schedule``; give one or the other.
    :param template_searchpath: folders (after the DAG file's own) where template files
        are looked up; a relative folder is relative to the DAG file's.
    :param user_defined_macros: names added to what templates see.
    :param user_defined_filters: Jinja filters added to the templates' environment.
    :param render_template_as_native_obj: render templates to Python objects (a list,
        a dict, a number) instead of strings.
    """

    def __init__(
        self,
        dag_id: str,
        *,
        schedule: Schedule = _NOTSET,
        start_date: datetime | date | None = None,
        catchup: bool = False,
        default_args: dict[str, Any] | None = None,
        max_active_runs: int | None = None,
        max_active_tasks: int | None = None,
        tags: Iterable[str] | None = None,
        description: str | None = None,
        params: dict[str, Any] | None = None,
        schedule_interval: Schedule = _NOTSET,
        template_searchpath: str | Iterable[str] | None = None,
        user_defined_macros: dict[str, Any] | None = None,
        user_defined_filters: dict[str, Any] | None = None,
        render_template_as_native_obj: bool = False,
        doc_md: str | None = None,
        dagrun_timeout: timedelta | int | float | None = None,
        on_success_callback: Any = None,
        on_failure_callback: Any = None,
    ):
        self.dag_id: str = check_id(dag_id, kind="dag_id")
        self.dagrun_timeout: timedelta | None = _timeout(dagrun_timeout, dag_id)
        for name, value in (("on_success_callback", on_success_callback), ("on_failure_callback", on_failure_callback)):
            if value is not None and not callable(value) and not (
                    isinstance(value, (list, tuple)) and all(callable(item) for item in value)):
                raise DagDefinitionError(f"DAG {dag_id!r}: {name} must be a callable or a list of callables")
            setattr(self, name, value)
        if schedule is not _NOTSET and schedule_interval is not _NOTSET:
            raise DagDefinitionError(
                f"DAG {dag_id!r}: give either schedule or schedule_interval, not both")
        raw_schedule = schedule if schedule is not _NOTSET else schedule_interval
        self.schedule: Schedule = normalize_schedule(
            None if raw_schedule is _NOTSET else raw_schedule, dag_id=dag_id)

        if default_args is not None and not isinstance(default_args, dict):
            raise DagDefinitionError(
                f"DAG {dag_id!r}: default_args must be a dict, not {type(default_args).__name__}")
        self.default_args: dict[str, Any] = dict(default_args or {})
        if start_date is None:
            start_date = self.default_args.get("start_date")
        self.start_date: datetime | None = as_utc(start_date, what=f"DAG {dag_id!r}: start_date")
        self.catchup: bool = bool(catchup)

        from crossdock.configuration import conf

        if max_active_runs is None:
            max_active_runs = conf.getint("core", "max_active_runs_per_dag")
        if max_active_tasks is None:
            max_active_tasks = conf.getint("core", "max_active_tasks_per_dag")
        self.max_active_runs: int = _positive_int(max_active_runs, what=f"DAG {dag_id!r}: max_active_runs")
        self.max_active_tasks: int = _positive_int(max_active_tasks, what=f"DAG {dag_id!r}: max_active_tasks")

        if isinstance(tags, str):
            tags = [tags]
        self.tags: list[str] = list(dict.fromkeys(tags or ()))
        for tag in self.tags:
            if not isinstance(tag, str):
                raise DagDefinitionError(f"DAG {dag_id!r}: tags must be strings, not {tag!r}")
        if description is not None and not isinstance(description, str):
            raise DagDefinitionError(f"DAG {dag_id!r}: description must be a string")
        self.description: str | None = description
        if doc_md is not None and not isinstance(doc_md, str):
            raise DagDefinitionError(f"DAG {dag_id!r}: doc_md must be a string")
        self.doc_md: str | None = doc_md
        if params is not None and not isinstance(params, Mapping):
            raise DagDefinitionError(f"DAG {dag_id!r}: params must be a dict, not {type(params).__name__}")
        self.params: ParamsDict = ParamsDict(params)
        if "params" in self.default_args:
            self.params.update(self.default_args.pop("params") or {})
        if isinstance(template_searchpath, str):
            template_searchpath = [template_searchpath]
        self.template_searchpath: list[str] = list(template_searchpath or ())
        if not all(isinstance(folder, str) for folder in self.template_searchpath):
            raise DagDefinitionError(f"DAG {dag_id!r}: template_searchpath must be folder names")
        for name, value in (("user_defined_macros", user_defined_macros),
                            ("user_defined_filters", user_defined_filters)):
            if value is not None and not isinstance(value, dict):
                raise DagDefinitionError(f"DAG {dag_id!r}: {name} must be a dict, not {type(value).__name__}")
        self.user_defined_macros: dict[str, Any] = dict(user_defined_macros or {})
        self.user_defined_filters: dict[str, Any] = dict(user_defined_filters or {})
        self.render_template_as_native_obj: bool = bool(render_template_as_native_obj)

        self.fileloc: str | None = _caller_file()
        self._tasks: dict[str, BaseOperator] = {}
        #: group_id → task group, in creation order (see :mod:`crossdock.dag.task_group`).
        self._task_groups: dict[str, TaskGroup] = {}
        #: upstream task_id → downstream task_id → what an edge label said about that edge.
        self._edge_info: dict[str, dict[str, dict[str, Any]]] = {}
        for collector in _collectors:
            collector.append(self)

    # -- context manager ---------------------------------------------------------
    def __enter__(self) -> "DAG":
        _open_dags.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if _open_dags and _open_dags[-1] is self:
            _open_dags.pop()
        elif self in _open_dags:
            _open_dags.remove(self)

    def __repr__(self) -> str:
        return f"<DAG: {self.dag_id}>"

    # -- tasks -------------------------------------------------------------------
    @property
    def task_dict(self) -> dict[str, "BaseOperator"]:
        """task_id → task, in the order the tasks were added."""
        return self._tasks

    @property
    def tasks(self) -> list["BaseOperator"]:
        return list(self._tasks.values())

    @property
    def task_ids(self) -> list[str]:
        return list(self._tasks)

    def has_task(self, task_id: str) -> bool:
        return task_id in self._tasks

    def get_task(self, task_id: str) -> "BaseOperator":
        try:
            return self._tasks[task_id]
        except KeyError:
            raise TaskNotFound(self.dag_id, task_id) from None

    def add_task(self, task: "BaseOperator") -> None:
        """Make ``task`` part of this DAG (operators do this themselves when given a DAG)."""
        existing = self._tasks.get(task.task_id)
        if existing is task:
            return
        if existing is not None:
            raise DuplicateTaskIdError(self.dag_id, task.task_id)
        if task.task_id in self._task_groups:
            raise DagDefinitionError(
                f"DAG {self.dag_id!r}: task_id {task.task_id!r} is already the group_id of a task group")
        if task.dag is not None and task.dag is not self:
            raise DagDefinitionError(
                f"task {task.task_id!r} belongs to DAG {task.dag.dag_id!r} and cannot be added "
                f"to DAG {self.dag_id!r}")
        self._tasks[task.task_id] = task
        task._attach(self)

    def add_tasks(self, tasks: Iterable["BaseOperator"]) -> None:
        for task in tasks:
            self.add_task(task)

    @property
    def task_group_dict(self) -> dict[str, "TaskGroup"]:
        """group_id → task group, in the order the groups were created."""
        return self._task_groups

    # -- edge labels ---------------------------------------------------------------
    @property
    def edge_info(self) -> dict[str, dict[str, dict[str, Any]]]:
        """upstream task_id → downstream task_id → the edge's info (``{"label": ...}``)."""
        return self._edge_info

    def set_edge_info(self, upstream_task_id: str, downstream_task_id: str, info: dict[str, Any]) -> None:
        """Store what an edge label says about the edge ``upstream >> downstream``."""
        self._edge_info.setdefault(upstream_task_id, {})[downstream_task_id] = dict(info)

    def get_edge_info(self, upstream_task_id: str, downstream_task_id: str) -> dict[str, Any]:
        """The edge's info (``{"label": "..."}``), or an empty dict for an unlabelled edge."""
        return dict(self._edge_info.get(upstream_task_id, {}).get(downstream_task_id, {}))

    @property
    def roots(self) -> list["BaseOperator"]:
        """Tasks with no upstream task: the ones a new run starts with."""
        return [task for task in self._tasks.values() if not task.upstream_task_ids]

    @property
    def leaves(self) -> list["BaseOperator"]:
        return [task for task in self._tasks.values() if not task.downstream_task_ids]

    # -- graph checks ------------------------------------------------------------
    def topological_sort(self) -> list["BaseOperator"]:
        """Tasks ordered so every task comes after all of its upstream tasks.

        Ties keep the order in which tasks were added, so the result is stable.
        """
        remaining = {task_id: len(task.upstream_task_ids & self._tasks.keys())
                     for task_id, task in self._tasks.items()}
        ready = [task_id for task_id, count in remaining.items() if count == 0]
        ordered: list[BaseOperator] = []
        while ready:
            task = self._tasks[ready.pop(0)]
            ordered.append(task)
            for child_id in task._downstream:
                if child_id in remaining:
                    remaining[child_id] -= 1
                    if remaining[child_id] == 0:
                        ready.append(child_id)
        if len(ordered) != len(self._tasks):
            cycle = self._find_cycle()
            raise DagCycleError(self.dag_id, cycle or sorted(set(self._tasks) - {t.task_id for t in ordered}))
        return ordered

    def _find_cycle(self) -> list[str] | None:
        """Task ids around one cycle, first id repeated at the end; None if acyclic."""
        white, grey, black = 0, 1, 2
        colour = dict.fromkeys(self._tasks, white)
        for start in self._tasks:
            if colour[start] != white:
                continue
            path = [start]
            stack = [iter(sorted(self._tasks[start].downstream_task_ids))]
            colour[start] = grey
            while stack:
                child = next(stack[-1], None)
                if child is None:
                    colour[path.pop()] = black
                    stack.pop()
                    continue
                if child not in colour:
                    continue
                if colour[child] == grey:
                    return path[path.index(child):] + [child]
                if colour[child] == white:
                    colour[child] = grey
                    path.append(child)
                    stack.append(iter(sorted(self._tasks[child].downstream_task_ids)))
        return None

    def validate(self) -> None:
        """Check the whole DAG once it is built; raise :class:`DagDefinitionError` if unusable."""
        for task in self._tasks.values():
            for other in (*task.upstream_list, *task.downstream_list):
                if self._tasks.get(other.task_id) is not other:
                    raise DagDefinitionError(
                        f"DAG {self.dag_id!r}: task {task.task_id!r} is linked to task "
                        f"{other.task_id!r}, which is not part of this DAG")
        cycle = self._find_cycle()
        if cycle is not None:
            raise DagCycleError(self.dag_id, cycle)
        if self.schedule is not None and self.start_date is None:
            raise DagDefinitionError(
                f"DAG {self.dag_id!r} has schedule {self.schedule!r} but no start_date; "
                f"a scheduled DAG needs a start_date")


def _timeout(value: Any, dag_id: str) -> timedelta | None:
    """``dagrun_timeout`` as a positive timedelta (seconds or a timedelta), or None."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise DagDefinitionError(f"DAG {dag_id!r}: dagrun_timeout must be a positive number of seconds "
                                 f"or a timedelta, not {value!r}")
    return timedelta(seconds=seconds)
