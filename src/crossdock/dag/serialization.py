"""DAGs as plain JSON: all the scheduler ever reads of user code.

``serialize_dag`` runs where user code runs (the DAG-file processor's child process);
``SerializedDAG`` is what the scheduler builds from the stored JSON. It imports
nothing but the standard library, so reading a DAG never executes a DAG file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Mapping

from crossdock.dag.exceptions import DagDefinitionError
from crossdock.dag.schedule import serialize_schedule

if TYPE_CHECKING:
    from crossdock.dag.baseoperator import BaseOperator
    from crossdock.dag.dag import DAG


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _json_safe(value: Any, *, where: str) -> Any:
    """``value`` made of JSON types only; Kubernetes client models become their API dicts."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item, where=where) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item, where=where) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if type(value).__module__.startswith("kubernetes."):
        # Imported only here: most DAGs never carry a V1Pod, and the client is slow to import.
        from kubernetes.client import ApiClient

        return ApiClient().sanitize_for_serialization(value)
    raise DagDefinitionError(f"{where} holds {type(value).__name__} {value!r}, which cannot be stored as JSON")


def relative_fileloc(fileloc: str | None) -> str | None:
    """``fileloc`` relative to ``[core] dags_folder`` when inside it, else unchanged."""
    if not fileloc:
        return fileloc
    from crossdock.configuration import conf

    folder = os.path.abspath(os.path.expanduser(conf.getstr("core", "dags_folder")))
    try:
        if os.path.commonpath([folder, fileloc]) == folder:
            return os.path.relpath(fileloc, folder)
    except ValueError:  # different drives or relative/absolute mix
        pass
    return fileloc


def effective_weights(ordered: list["BaseOperator"]) -> dict[str, int]:
    """``priority_weight_total`` of every task, from one pass over the DAG in each direction.

    ``ordered`` is the DAG's topological order. Walking it once backwards (collecting
    descendants) and once forwards (ancestors) keeps big DAGs cheap, where asking
    each task for its own relatives would walk the graph once per task.
    """
    weights = {task.task_id: task.priority_weight for task in ordered}
    descendants: dict[str, frozenset[str]] = {}
    for task in reversed(ordered):
        below: set[str] = set()
        for child in task.downstream_task_ids:
            below.add(child)
            below |= descendants[child]
        descendants[task.task_id] = frozenset(below)
    ancestors: dict[str, frozenset[str]] = {}
    for task in ordered:
        above: set[str] = set()
        for parent in task.upstream_task_ids:
            above.add(parent)
            above |= ancestors[parent]
        ancestors[task.task_id] = frozenset(above)
    totals = {}
    for task in ordered:
        if task.weight_rule == "absolute":
            relatives: frozenset[str] = frozenset()
        elif task.weight_rule == "upstream":
            relatives = ancestors[task.task_id]
        else:
            relatives = descendants[task.task_id]
        totals[task.task_id] = task.priority_weight + sum(weights[task_id] for task_id in relatives)
    return totals


def serialize_task(task: "BaseOperator", *, priority_weight: int | None = None) -> dict[str, Any]:
    """One task's JSON; ``priority_weight`` is its effective weight when already computed.

    ``empty`` is present (true) only for a task the scheduler may succeed without a try
    (see :mod:`crossdock.dag.empty_operator`), so other tasks keep their stored form.
    """
    from crossdock.dag.empty_operator import is_empty_task

    where = f"DAG {task.dag_id!r}, task {task.task_id!r}: executor_config"
    data = {
        "task_type": task.task_type,
        "queue": task.queue,
        "pool": task.pool,
        "pool_slots": task.pool_slots,
        "priority_weight": task.priority_weight_total if priority_weight is None else priority_weight,
        "retries": task.retries,
        "retry_delay": task.retry_delay.total_seconds(),
        "retry_exponential_backoff": task.retry_exponential_backoff,
        "max_retry_delay": _seconds(task.max_retry_delay),
        "execution_timeout": _seconds(task.execution_timeout),
        "executor_config": _json_safe(task.executor_config, where=where),
        "executor": task.executor,
        "trigger_rule": task.trigger_rule,
        "upstream": sorted(task.upstream_task_ids),
        "downstream": sorted(task.downstream_task_ids),
    }
    if is_empty_task(task):
        data["empty"] = True
    if getattr(task, "overflow", None) is not None:  # stored only when set, as below
        data["overflow"] = task.overflow
    if getattr(task, "mapped_spec", None):  # a mapped task: how the scheduler expands it
        data["mapped"] = task.mapped_spec
    if getattr(task, "external_watch", None):  # an ExternalTaskSensor: what the scheduler looks up
        data["external_watch"] = task.external_watch
    for name in ("depends_on_past", "wait_for_downstream", "max_active_tis_per_dag"):
        if getattr(task, name, None):  # stored only when set: other tasks keep their stored form
            data[name] = getattr(task, name)
    return data


def serialize_params(params: Mapping[str, Any], *, dag_id: str) -> dict[str, dict[str, Any]]:
    """A DAG's params as stored: name → ``default`` (absent when required), ``description``, ``schema``.

    This is what a trigger validates a run's conf against (see
    :func:`crossdock.dag.param.validate_run_conf`) without importing the DAG file. A
    datetime or date default is stored as its ISO string; any other value JSON cannot
    hold makes the DAG file an import error naming the param.
    """
    from crossdock.dag.param import ParamsDict

    return {str(name): _json_safe(param.serialize(), where=f"DAG {dag_id!r}: param {name!r}")
            for name, param in ParamsDict(params).items()}


def serialize_edge_info(dag: "DAG") -> dict[str, dict[str, dict[str, Any]]]:
    """The DAG's edge labels, for the edges it has (upstream → downstream → info)."""
    stored: dict[str, dict[str, dict[str, Any]]] = {}
    for upstream, edges in (getattr(dag, "edge_info", None) or {}).items():
        task = dag.task_dict.get(upstream)
        kept = {downstream: _json_safe(info, where=f"DAG {dag.dag_id!r}: edge {upstream} >> {downstream}")
                for downstream, info in edges.items()
                if info and task is not None and downstream in task.downstream_task_ids}
        if kept:
            stored[upstream] = kept
    return stored


def serialize_dag(dag: "DAG") -> dict[str, Any]:
    """The JSON-safe form of ``dag`` (see the module docs for who reads which key).

    ``params`` is present only when the DAG declares some, so a DAG without any keeps
    the hash (and stored row) it had before params were serialized; so are ``doc_md``,
    ``task_groups`` (group_id → label, parent, tooltip, direct tasks and groups) and
    ``edge_info`` (upstream → downstream → ``{"label": ...}``), kept for a UI to draw.
    """
    fileloc = dag.fileloc
    if fileloc and not fileloc.startswith("<"):
        fileloc = os.path.abspath(fileloc)
    ordered = dag.topological_sort()
    weights = effective_weights(ordered)
    optional: dict[str, Any] = {}
    if getattr(dag, "params", None):
        optional["params"] = serialize_params(dag.params, dag_id=dag.dag_id)
    if getattr(dag, "doc_md", None):
        optional["doc_md"] = dag.doc_md
    if getattr(dag, "dagrun_timeout", None):
        optional["dagrun_timeout"] = dag.dagrun_timeout.total_seconds()
    for name in ("on_success_callback", "on_failure_callback"):
        if getattr(dag, name, None):  # the scheduler only needs to know there is one
            optional[f"has_{name}"] = True
    groups = getattr(dag, "task_group_dict", None)
    if groups:
        optional["task_groups"] = {group_id: group.serialize() for group_id, group in groups.items()}
    edge_info = serialize_edge_info(dag)
    if edge_info:
        optional["edge_info"] = edge_info
    return {
        "dag_id": dag.dag_id,
        "fileloc": fileloc,
        "relative_fileloc": relative_fileloc(fileloc),
        "schedule": serialize_schedule(dag.schedule),
        "start_date": dag.start_date.isoformat() if dag.start_date else None,
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "max_active_tasks": dag.max_active_tasks,
        "tags": list(dag.tags),
        "description": dag.description,
        "tasks": {task.task_id: serialize_task(task, priority_weight=weights[task.task_id])
                  for task in ordered},
        **optional,
    }


def dag_hash(data: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a serialized DAG: equal hashes mean nothing changed."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _parse_datetime(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@dataclass(frozen=True)
class SerializedTask:
    """A task as the scheduler sees it; durations are in seconds."""

    task_id: str
    task_type: str
    queue: str
    pool: str
    pool_slots: int
    priority_weight: int
    retries: int
    retry_delay: float
    retry_exponential_backoff: bool
    max_retry_delay: float | None
    execution_timeout: float | None
    executor_config: dict[str, Any]
    executor: str | None
    trigger_rule: str
    upstream_task_ids: frozenset[str]
    downstream_task_ids: frozenset[str]
    #: The scheduler may succeed the task without a try (an EmptyOperator).
    is_empty: bool = False
    depends_on_past: bool = False
    wait_for_downstream: bool = False
    max_active_tis_per_dag: int | None = None
    #: ``overflow=`` of the task: may overflow rules move it (None: only by a rule naming its queue).
    overflow: bool | None = None
    #: An ExternalTaskSensor's watched DAG, task and delta (see crossdock.dag.sensors).
    external_watch: dict | None = None
    #: A mapped task's inputs: each a literal list's length or the (task_id, key) of its XCom list.
    mapped: dict | None = None

    @classmethod
    def from_dict(cls, task_id: str, data: Mapping[str, Any]) -> "SerializedTask":
        return cls(
            task_id=task_id,
            task_type=data["task_type"],
            queue=data["queue"],
            pool=data["pool"],
            pool_slots=data["pool_slots"],
            priority_weight=data["priority_weight"],
            retries=data["retries"],
            retry_delay=data["retry_delay"],
            retry_exponential_backoff=data["retry_exponential_backoff"],
            max_retry_delay=data.get("max_retry_delay"),
            execution_timeout=data.get("execution_timeout"),
            executor_config=data.get("executor_config") or {},
            executor=data.get("executor"),
            trigger_rule=data["trigger_rule"],
            upstream_task_ids=frozenset(data.get("upstream", ())),
            downstream_task_ids=frozenset(data.get("downstream", ())),
            is_empty=bool(data.get("empty", False)),
            depends_on_past=bool(data.get("depends_on_past", False)),
            wait_for_downstream=bool(data.get("wait_for_downstream", False)),
            max_active_tis_per_dag=data.get("max_active_tis_per_dag"),
            overflow=data.get("overflow"),
            external_watch=data.get("external_watch"),
            mapped=data.get("mapped"),
        )

    @property
    def upstream(self) -> list[str]:
        return sorted(self.upstream_task_ids)

    @property
    def downstream(self) -> list[str]:
        return sorted(self.downstream_task_ids)

    def retry_delay_for(self, try_number: int) -> float:
        """Seconds to wait before retrying after failed try ``try_number`` (1 = first try).

        With exponential backoff the delay doubles after each failed try, capped by
        ``max_retry_delay`` when it is set.
        """
        delay = self.retry_delay
        if self.retry_exponential_backoff:
            delay = self.retry_delay * (2 ** max(try_number - 1, 0))
        if self.max_retry_delay is not None:
            delay = min(delay, self.max_retry_delay)
        return delay


@dataclass(frozen=True)
class SerializedTaskGroup:
    """A task group as stored: for drawing the DAG; the scheduler needs none of it."""

    group_id: str
    label: str
    parent_group_id: str | None
    tooltip: str
    task_ids: tuple[str, ...]
    child_group_ids: tuple[str, ...]
    ui_color: str | None = None
    ui_fgcolor: str | None = None

    @classmethod
    def from_dict(cls, group_id: str, data: Mapping[str, Any]) -> "SerializedTaskGroup":
        return cls(group_id=group_id, label=data.get("label", group_id), parent_group_id=data.get("parent"),
                   tooltip=data.get("tooltip", ""), task_ids=tuple(data.get("tasks", ())),
                   child_group_ids=tuple(data.get("groups", ())), ui_color=data.get("ui_color"),
                   ui_fgcolor=data.get("ui_fgcolor"))


class SerializedDAG:
    """A read-only DAG built from :func:`serialize_dag` output, without importing user code."""

    def __init__(self, data: Mapping[str, Any]):
        try:
            self.data: dict[str, Any] = dict(data)
            self.dag_id: str = data["dag_id"]
            self.fileloc: str = data["fileloc"]
            self.relative_fileloc: str = data.get("relative_fileloc") or data["fileloc"]
            self.schedule: str | None = data.get("schedule")
            self.start_date: datetime | None = _parse_datetime(data.get("start_date"))
            self.catchup: bool = bool(data.get("catchup", False))
            self.max_active_runs: int = data["max_active_runs"]
            self.max_active_tasks: int = data["max_active_tasks"]
            self.tags: list[str] = list(data.get("tags") or ())
            self.description: str | None = data.get("description")
            #: name → stored Param (see :func:`serialize_params`); a DAG stored before
            #: params were serialized has none.
            self.params: dict[str, dict[str, Any]] = dict(data.get("params") or {})
            self.doc_md: str | None = data.get("doc_md")
            #: Seconds a run may take before it fails (DAG(dagrun_timeout=...)); None for no limit.
            self.dagrun_timeout: float | None = data.get("dagrun_timeout")
            self.has_on_success_callback: bool = bool(data.get("has_on_success_callback"))
            self.has_on_failure_callback: bool = bool(data.get("has_on_failure_callback"))
            #: group_id → group, outermost first (empty for a DAG without groups).
            self.task_groups: dict[str, SerializedTaskGroup] = {
                group_id: SerializedTaskGroup.from_dict(group_id, group)
                for group_id, group in (data.get("task_groups") or {}).items()}
            #: upstream task_id → downstream task_id → the edge's info (``{"label": ...}``).
            self.edge_info: dict[str, dict[str, dict[str, Any]]] = dict(data.get("edge_info") or {})
            self.tasks: dict[str, SerializedTask] = {
                task_id: SerializedTask.from_dict(task_id, task)
                for task_id, task in data["tasks"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            name = data.get("dag_id", "?") if isinstance(data, Mapping) else "?"
            raise ValueError(f"serialized DAG {name!r} is malformed: {type(exc).__name__}: {exc}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SerializedDAG":
        return cls(data)

    @classmethod
    def from_json(cls, text: str) -> "SerializedDAG":
        return cls(json.loads(text))

    def __repr__(self) -> str:
        return f"<SerializedDAG: {self.dag_id}>"

    @property
    def task_ids(self) -> list[str]:
        return list(self.tasks)

    def has_task(self, task_id: str) -> bool:
        return task_id in self.tasks

    def get_edge_info(self, upstream_task_id: str, downstream_task_id: str) -> dict[str, Any]:
        """The stored info of one edge (``{"label": ...}``), empty for an unlabelled one."""
        return dict(self.edge_info.get(upstream_task_id, {}).get(downstream_task_id, {}))

    def get_task(self, task_id: str) -> SerializedTask:
        from crossdock.dag.exceptions import TaskNotFound

        try:
            return self.tasks[task_id]
        except KeyError:
            raise TaskNotFound(self.dag_id, task_id) from None

    @property
    def roots(self) -> list[SerializedTask]:
        """Tasks with no upstream task."""
        return [task for task in self.tasks.values() if not task.upstream_task_ids]

    @property
    def leaves(self) -> list[SerializedTask]:
        return [task for task in self.tasks.values() if not task.downstream_task_ids]

    @property
    def subdir(self) -> str:
        """The DAG file as ``--subdir`` of a task command: ``DAGS_FOLDER/...`` when inside it."""
        from crossdock.dag.loader import DAGS_FOLDER_MARKER

        if os.path.isabs(self.relative_fileloc):
            return self.relative_fileloc
        return f"{DAGS_FOLDER_MARKER}/{self.relative_fileloc}"

    @property
    def dag_hash(self) -> str:
        return dag_hash(self.data)
