"""BaseOperator: one task of a DAG and the settings the scheduler and executors read.

Each setting is resolved once, when the operator is created: the value passed in,
else the DAG's ``default_args`` (then the operator's own ``default_args``), else the
module default below. Only the parameters of :class:`BaseOperator` are taken from
``default_args``; keys that no operator parameter matches (an Airflow ``owner`` or
``email``, say) are ignored so Airflow-style default_args load unchanged.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any, Callable, Sequence, Union

from crossdock.dag.dag import DAG, _NOTSET, check_id, get_current_dag
from crossdock.dag.dependency_mixin import DependencyMixin
from crossdock.dag.exceptions import DagCycleError, DagDefinitionError
from crossdock.dag.task_group import TaskGroup, group_for_new_task
from crossdock.dag.trigger_rule import TRIGGER_RULES, TriggerRule
from crossdock.dag.weight_rule import WEIGHT_RULES, WeightRule
from crossdock.dag.xcom_arg import XComArg, xcom_args_in

DEFAULT_POOL = "default_pool"
DEFAULT_POOL_SLOTS = 1
DEFAULT_PRIORITY_WEIGHT = 1
DEFAULT_WEIGHT_RULE = WeightRule.DOWNSTREAM.value
DEFAULT_RETRIES = 0
DEFAULT_RETRY_DELAY = timedelta(seconds=300)
DEFAULT_RETRY_EXPONENTIAL_BACKOFF = False
DEFAULT_TRIGGER_RULE = TriggerRule.ALL_SUCCESS.value

Duration = Union[timedelta, int, float]
#: A task callback: a callable taking the context, or a list of them (Airflow's forms).
Callback = Union[Callable[[dict], Any], Sequence[Callable[[dict], Any]], None]
TaskOrTasks = Union["BaseOperator", Sequence["BaseOperator"]]


def _as_duration(value: object, *, what: str, allow_none: bool) -> timedelta | None:
    """Seconds (int/float) or a timedelta, as a non-negative timedelta."""
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        duration = timedelta(seconds=value)
    else:
        raise DagDefinitionError(f"{what} must be a number of seconds or a timedelta, not {value!r}")
    if duration < timedelta(0):
        raise DagDefinitionError(f"{what} must not be negative, got {value!r}")
    return duration


def _checked_callback(value: Any, what: str) -> Any:
    if value is None or callable(value):
        return value
    if isinstance(value, (list, tuple)) and all(callable(item) for item in value):
        return list(value)
    raise DagDefinitionError(f"{what} must be a callable or a list of callables, not {value!r}")


def _where(dag_id: str | None, task_id: str) -> str:
    """How a declaration error names its task: with the DAG when it has one."""
    return f"DAG {dag_id!r}, task {task_id!r}" if dag_id else f"task {task_id!r}"


def linked_tasks(items: object, *, other: object, upstream: bool) -> list["BaseOperator"]:
    """The tasks ``items`` stand for when linked to ``other``; ``upstream``: items come first.

    Besides tasks, XComArgs and lists of them, anything with a ``relate(other,
    upstream=...)`` method may be linked: it says which of its tasks take part (a task
    group: its leaves when upstream, its roots when downstream) and may make edges of
    its own (an edge label joins the tasks on its two sides, then stands for none).
    """
    if isinstance(items, BaseOperator):
        return [items]
    if isinstance(items, XComArg):
        return linked_tasks(items.operator, other=other, upstream=upstream)
    if isinstance(items, (list, tuple, set, frozenset)):
        found: list[BaseOperator] = []
        for item in items:
            found.extend(linked_tasks(item, other=other, upstream=upstream))
        return found
    relate = getattr(items, "relate", None)
    if callable(relate) and not isinstance(items, type):
        return list(relate(other, upstream=upstream))
    raise TypeError(f"can only link tasks to tasks, task groups, edge labels or lists of them, "
                    f"not {type(items).__name__} {items!r}")


class BaseOperator(DependencyMixin):
    """One task. Subclasses implement :meth:`execute`; ``>>`` and ``<<`` link tasks.

    :param task_id: name of the task, unique within its DAG.
    :param dag: the DAG to join; default is the DAG of the enclosing ``with DAG(...)`` block.
    :param default_args: defaults for this operator, over the DAG's ``default_args``.
    :param queue: where the task runs; the queue decides the executor (``kubernetes`` → a pod).
        Default ``[core] default_queue``.
    :param pool: the pool whose slots the task occupies while running.
    :param pool_slots: how many slots of the pool it occupies.
    :param priority_weight: the task's own weight; see ``weight_rule``.
    :param weight_rule: ``downstream``, ``upstream`` or ``absolute``: how the effective
        priority (:attr:`priority_weight_total`) is computed.
    :param retries: how many times a failed try is retried.
    :param retry_delay: wait before a retry (seconds or timedelta).
    :param retry_exponential_backoff: double the wait after each failed try.
    :param max_retry_delay: cap of the wait when backing off exponentially.
    :param execution_timeout: a try running longer than this fails.
    :param executor_config: per-executor settings, e.g. ``{"pod_override": ...}`` for Kubernetes.
    :param executor: name of the executor to use instead of the queue-based choice.
    :param overflow: whether ``[executor_routing] overflow`` may move the task to another
        executor while its own has a backlog: True by any rule matching its queue, False
        never; unset, only by a rule that names its queue exactly (and not when ``executor=``
        pins it). See :mod:`crossdock.executors.overflow`.
    :param trigger_rule: when the task may run given its upstream states.
    :param doc: free text describing the task; ``doc_md``, ``doc_rst``, ``doc_json`` and
        ``doc_yaml`` are kept as given too, as Airflow's documentation attributes.
    :param task_group: the group to join; default the innermost open ``with TaskGroup(...)``
        of the task's DAG. The group's id prefixes the task_id, and its ``default_args``
        come between the DAG's and the operator's.
    :param on_execute_callback: called with the context before :meth:`execute`, in the try;
        ``on_success_callback``, ``on_retry_callback`` and ``on_failure_callback`` after it
        (see :mod:`crossdock.runner.callbacks`). Each may be a list of callables.
    :param depends_on_past: run only when this task succeeded (or was skipped) in the DAG's
        previous run; ``wait_for_downstream`` also waits for that run's direct downstream
        tasks of it (and implies ``depends_on_past``). The first run does not wait.
    :param max_active_tis_per_dag: most instances of this task running at once, over all runs.
    :param do_xcom_push: push what :meth:`execute` returns as the ``return_value`` XCom.
    :param multiple_outputs: also push each key of the dict :meth:`execute` returns.
    :param params: the task's params, over the DAG's (``context["params"]``).

    ``template_fields`` names the attributes rendered with Jinja in the try, just before
    :meth:`execute`; a string in one of them that ends with one of ``template_ext`` is
    the name of a template file, whose content is rendered instead. An
    :class:`~crossdock.dag.xcom_arg.XComArg` set in one makes this task depend on the
    task that pushes it, as Airflow's operators do.
    """

    template_fields: Sequence[str] = ()
    template_ext: Sequence[str] = ()

    def __init__(
        self,
        task_id: str,
        *,
        dag: DAG | None = None,
        default_args: dict[str, Any] | None = None,
        queue: str = _NOTSET,
        pool: str = _NOTSET,
        pool_slots: int = _NOTSET,
        priority_weight: int = _NOTSET,
        weight_rule: str = _NOTSET,
        retries: int = _NOTSET,
        retry_delay: Duration = _NOTSET,
        retry_exponential_backoff: bool = _NOTSET,
        max_retry_delay: Duration | None = _NOTSET,
        execution_timeout: Duration | None = _NOTSET,
        executor_config: dict[str, Any] | None = _NOTSET,
        executor: str | None = _NOTSET,
        overflow: bool | None = _NOTSET,
        trigger_rule: str = _NOTSET,
        doc: str | None = _NOTSET,
        do_xcom_push: bool = _NOTSET,
        multiple_outputs: bool = _NOTSET,
        params: dict[str, Any] | None = None,
        task_group: TaskGroup | None = None,
        doc_md: str | None = _NOTSET,
        doc_rst: str | None = _NOTSET,
        doc_json: str | None = _NOTSET,
        doc_yaml: str | None = _NOTSET,
        on_execute_callback: Callback = _NOTSET,
        on_success_callback: Callback = _NOTSET,
        on_retry_callback: Callback = _NOTSET,
        on_failure_callback: Callback = _NOTSET,
        depends_on_past: bool = _NOTSET,
        wait_for_downstream: bool = _NOTSET,
        max_active_tis_per_dag: int | None = _NOTSET,
    ):
        dag = dag if dag is not None else get_current_dag()
        if dag is not None and not isinstance(dag, DAG):
            raise DagDefinitionError(f"task {task_id!r}: dag must be a DAG, not {type(dag).__name__}")
        dag, group = group_for_new_task(dag, task_group)
        dag_id = dag.dag_id if dag is not None else None
        self.task_id: str = check_id(task_id, kind="task_id", dag_id=dag_id)
        if group is not None:
            self.task_id = check_id(group.child_id(self.task_id), kind="task_id", dag_id=dag_id)
        where = _where(dag_id, self.task_id)

        defaults: dict[str, Any] = {}
        if dag is not None:
            defaults.update(dag.default_args)
        if group is not None:
            defaults.update(group.default_args)
        if default_args:
            defaults.update(default_args)

        def pick(name: str, given: Any, fallback: Any) -> Any:
            if given is not _NOTSET:
                return given
            return defaults.get(name, fallback)

        from crossdock.configuration import conf

        self.queue: str = pick("queue", queue, _NOTSET)
        if self.queue is _NOTSET:
            self.queue = conf.getstr("core", "default_queue")
        if not isinstance(self.queue, str) or not self.queue:
            raise DagDefinitionError(f"{where}: queue must be a non-empty string, not {self.queue!r}")
        self.pool: str = pick("pool", pool, DEFAULT_POOL)
        if not isinstance(self.pool, str) or not self.pool:
            raise DagDefinitionError(f"{where}: pool must be a non-empty string, not {self.pool!r}")
        self.pool_slots: int = pick("pool_slots", pool_slots, DEFAULT_POOL_SLOTS)
        if isinstance(self.pool_slots, bool) or not isinstance(self.pool_slots, int) or self.pool_slots < 1:
            raise DagDefinitionError(f"{where}: pool_slots must be a whole number of at least 1, "
                                     f"not {self.pool_slots!r}")
        self.priority_weight: int = pick("priority_weight", priority_weight, DEFAULT_PRIORITY_WEIGHT)
        if isinstance(self.priority_weight, bool) or not isinstance(self.priority_weight, int):
            raise DagDefinitionError(f"{where}: priority_weight must be a whole number, "
                                     f"not {self.priority_weight!r}")
        self.weight_rule: str = str(pick("weight_rule", weight_rule, DEFAULT_WEIGHT_RULE))
        if self.weight_rule not in WEIGHT_RULES:
            raise DagDefinitionError(f"{where}: weight_rule {self.weight_rule!r} is not one of "
                                     f"{', '.join(sorted(WEIGHT_RULES))}")
        self.retries: int = pick("retries", retries, DEFAULT_RETRIES)
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise DagDefinitionError(f"{where}: retries must be a whole number of at least 0, "
                                     f"not {self.retries!r}")
        self.retry_delay: timedelta = _as_duration(
            pick("retry_delay", retry_delay, DEFAULT_RETRY_DELAY), what=f"{where}: retry_delay",
            allow_none=False)
        self.retry_exponential_backoff: bool = bool(
            pick("retry_exponential_backoff", retry_exponential_backoff, DEFAULT_RETRY_EXPONENTIAL_BACKOFF))
        self.max_retry_delay: timedelta | None = _as_duration(
            pick("max_retry_delay", max_retry_delay, None), what=f"{where}: max_retry_delay",
            allow_none=True)
        self.execution_timeout: timedelta | None = _as_duration(
            pick("execution_timeout", execution_timeout, None), what=f"{where}: execution_timeout",
            allow_none=True)
        if self.execution_timeout is not None and self.execution_timeout == timedelta(0):
            raise DagDefinitionError(f"{where}: execution_timeout must be positive")
        self.executor_config: dict[str, Any] = pick("executor_config", executor_config, None) or {}
        if not isinstance(self.executor_config, dict):
            raise DagDefinitionError(f"{where}: executor_config must be a dict, "
                                     f"not {type(self.executor_config).__name__}")
        self.executor: str | None = pick("executor", executor, None)
        if self.executor is not None and not isinstance(self.executor, str):
            raise DagDefinitionError(f"{where}: executor must be an executor name, not {self.executor!r}")
        self.overflow: bool | None = pick("overflow", overflow, None)
        if self.overflow is not None and not isinstance(self.overflow, bool):
            raise DagDefinitionError(f"{where}: overflow must be True, False or None, not {self.overflow!r}")
        self.trigger_rule: str = str(pick("trigger_rule", trigger_rule, DEFAULT_TRIGGER_RULE))
        if self.trigger_rule not in TRIGGER_RULES:
            raise DagDefinitionError(f"{where}: trigger_rule {self.trigger_rule!r} is not one of "
                                     f"{', '.join(sorted(TRIGGER_RULES))}")
        self.doc: str | None = pick("doc", doc, None)
        self.doc_md: str | None = pick("doc_md", doc_md, None)
        self.doc_rst: str | None = pick("doc_rst", doc_rst, None)
        self.doc_json: str | None = pick("doc_json", doc_json, None)
        self.doc_yaml: str | None = pick("doc_yaml", doc_yaml, None)
        for name, given in (("on_execute_callback", on_execute_callback), ("on_success_callback", on_success_callback),
                            ("on_retry_callback", on_retry_callback), ("on_failure_callback", on_failure_callback)):
            setattr(self, name, _checked_callback(pick(name, given, None), f"{where}: {name}"))
        self.wait_for_downstream: bool = bool(pick("wait_for_downstream", wait_for_downstream, False))
        self.depends_on_past: bool = bool(pick("depends_on_past", depends_on_past, False)) or self.wait_for_downstream
        self.max_active_tis_per_dag: int | None = pick("max_active_tis_per_dag", max_active_tis_per_dag, None)
        if self.max_active_tis_per_dag is not None and (
                isinstance(self.max_active_tis_per_dag, bool) or not isinstance(self.max_active_tis_per_dag, int)
                or self.max_active_tis_per_dag < 1):
            raise DagDefinitionError(f"{where}: max_active_tis_per_dag must be a whole number of at least 1, "
                                     f"not {self.max_active_tis_per_dag!r}")
        self.do_xcom_push: bool = bool(pick("do_xcom_push", do_xcom_push, True))
        self.multiple_outputs: bool = bool(pick("multiple_outputs", multiple_outputs, False))
        if params is not None and not isinstance(params, dict):
            raise DagDefinitionError(f"{where}: params must be a dict, not {type(params).__name__}")
        self.params: dict[str, Any] = dict(params or {})

        self._dag: DAG | None = None
        self._upstream: dict[str, BaseOperator] = {}
        self._downstream: dict[str, BaseOperator] = {}
        self.task_group: TaskGroup | None = None
        if dag is not None:
            dag.add_task(self)
        if group is not None:
            group.add(self)
        if type(self) is BaseOperator:
            self._link_template_xcom_args()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap each subclass's ``__init__`` so that, once the outermost one has set every
        template field, the XComArgs in them link this task to the tasks that push them.
        (A ``__setattr__`` hook would do it too, at a cost on every attribute of every task.)"""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def init_then_link(self: "BaseOperator", *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            if _outermost_init_class(type(self)) is cls:
                self._link_template_xcom_args()

        cls.__init__ = init_then_link  # type: ignore[method-assign]

    def _link_template_xcom_args(self) -> None:
        for name in self.template_fields:
            for arg in xcom_args_in(self.__dict__.get(name)):
                if arg.operator is not self:
                    self.set_upstream(arg.operator)

    @property
    def output(self) -> XComArg:
        """The value this task's :meth:`execute` returns, for another task's argument."""
        return XComArg(self)
    # -- identity ------------------------------------------------------------------
    @property
    def dag(self) -> DAG | None:
        return self._dag

    @dag.setter
    def dag(self, dag: DAG) -> None:
        dag.add_task(self)

    def _attach(self, dag: DAG) -> None:
        self._dag = dag

    @property
    def dag_id(self) -> str | None:
        return self._dag.dag_id if self._dag is not None else None

    @property
    def task_type(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<Task({self.task_type}): {self.task_id}>"

    def _definition_error(self, problem: str) -> DagDefinitionError:
        """``problem`` with the DAG and task it is about, for an operator's own checks."""
        return DagDefinitionError(f"{_where(self.dag_id, self.task_id)}: {problem}")

    # -- running -------------------------------------------------------------------
    def execute(self, context: dict[str, Any]) -> Any:
        """Do the task's work; raising fails the try. Called by the task runner."""
        raise NotImplementedError(f"{self.task_type} does not implement execute()")

    def on_kill(self) -> None:
        """Stop work started by :meth:`execute` (e.g. child processes) when the try is killed."""

    # -- relations -----------------------------------------------------------------
    @property
    def upstream_task_ids(self) -> set[str]:
        return set(self._upstream)

    @property
    def downstream_task_ids(self) -> set[str]:
        return set(self._downstream)

    @property
    def upstream_list(self) -> list["BaseOperator"]:
        return list(self._upstream.values())

    @property
    def downstream_list(self) -> list["BaseOperator"]:
        return list(self._downstream.values())

    def set_downstream(self, others: TaskOrTasks) -> None:
        for other in linked_tasks(others, other=self, upstream=False):
            _link(self, other)

    def set_upstream(self, others: TaskOrTasks) -> None:
        for other in linked_tasks(others, other=self, upstream=True):
            _link(other, self)

    def get_flat_relatives(self, *, upstream: bool) -> list["BaseOperator"]:
        """Every task reachable upstream (or downstream) of this one, each once."""
        seen: dict[int, BaseOperator] = {}
        pending = list((self._upstream if upstream else self._downstream).values())
        while pending:
            task = pending.pop()
            if id(task) in seen or task is self:
                continue
            seen[id(task)] = task
            pending.extend((task._upstream if upstream else task._downstream).values())
        return list(seen.values())

    @property
    def priority_weight_total(self) -> int:
        """The effective priority the scheduler orders queued tasks by (see ``weight_rule``)."""
        if self.weight_rule == WeightRule.ABSOLUTE:
            return self.priority_weight
        relatives = self.get_flat_relatives(upstream=self.weight_rule == WeightRule.UPSTREAM)
        return self.priority_weight + sum(task.priority_weight for task in relatives)


@functools.lru_cache(maxsize=None)
def _outermost_init_class(cls: type) -> type:
    """The class whose ``__init__`` an instance of ``cls`` runs first."""
    return next(klass for klass in cls.__mro__ if "__init__" in klass.__dict__)


def _dag_name(task: BaseOperator) -> str:
    return task.dag.dag_id if task.dag is not None else "<no DAG>"


def _path_between(start: BaseOperator, goal: BaseOperator) -> list[BaseOperator] | None:
    """Tasks from ``start`` to ``goal`` following downstream edges, or None."""
    parents: dict[int, BaseOperator | None] = {id(start): None}
    pending = [start]
    while pending:
        task = pending.pop()
        if task is goal:
            path = [task]
            while (parent := parents[id(path[-1])]) is not None:
                path.append(parent)
            return list(reversed(path))
        for child in task._downstream.values():
            if id(child) not in parents:
                parents[id(child)] = task
                pending.append(child)
    return None


def _link(upstream: BaseOperator, downstream: BaseOperator) -> None:
    """Add the edge ``upstream >> downstream`` unless it would break the DAG."""
    if upstream._downstream.get(downstream.task_id) is downstream:
        return
    up_dag, down_dag = upstream.dag, downstream.dag
    if up_dag is not None and down_dag is not None and up_dag is not down_dag:
        raise DagDefinitionError(
            f"cannot link task {upstream.task_id!r} of DAG {up_dag.dag_id!r} to task "
            f"{downstream.task_id!r} of DAG {down_dag.dag_id!r}: tasks of different DAGs")
    back_path = _path_between(downstream, upstream)
    if back_path is not None:
        cycle = [upstream.task_id] + [task.task_id for task in back_path]
        raise DagCycleError(_dag_name(upstream if up_dag else downstream), cycle)
    if up_dag is None and down_dag is not None:
        down_dag.add_task(upstream)
    elif down_dag is None and up_dag is not None:
        up_dag.add_task(downstream)
    upstream._downstream[downstream.task_id] = downstream
    downstream._upstream[upstream.task_id] = upstream

