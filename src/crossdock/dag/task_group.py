"""TaskGroup and ``@task_group``: tasks of a DAG gathered under one name (Airflow's).

A group changes three things about the tasks created inside it, all at parse time:
their ids get the group's prefix (``group.task``, nested ``outer.inner.task``), their
defaults come from the group's ``default_args`` over the DAG's, and ``>>`` / ``<<`` on
the group link its edge tasks (the group's *leaves* when it is upstream, its *roots*
when it is downstream). The scheduler sees plain tasks and edges; the group structure
is kept in the serialized DAG only so a UI can draw it.

As in Airflow, linking a group links the tasks it holds at that moment: ``a >> group``
before the group has tasks makes no edge.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import TYPE_CHECKING, Any, Callable, Iterator

from crossdock.dag.dag import DAG, get_current_dag
from crossdock.dag.dependency_mixin import DependencyMixin
from crossdock.dag.exceptions import DagDefinitionError

if TYPE_CHECKING:
    from crossdock.dag.baseoperator import BaseOperator

#: A group_id that prefixes task ids: no dots, since the dot separates the prefix.
GROUP_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,200}")
GROUP_ID_RULE = "1 to 200 characters from letters, digits, '_' and '-'"
#: Joins a reused group function's name and its use count (``section``, ``section__1``).
GROUP_ID_SUFFIX = "__"
DEFAULT_UI_COLOR = "CornflowerBlue"
DEFAULT_UI_FGCOLOR = "#000"

#: Groups whose ``with`` block is open, innermost last; tasks created inside join the last
#: one that belongs to their DAG.
_open_groups: list["TaskGroup"] = []


def current_task_group(dag: DAG | None) -> "TaskGroup | None":
    """The innermost open group of ``dag`` (of any DAG when ``dag`` is None)."""
    for group in reversed(_open_groups):
        if dag is None or group.dag is dag:
            return group
    return None


def group_for_new_task(dag: DAG | None, task_group: "TaskGroup | None") -> tuple[DAG | None, "TaskGroup | None"]:
    """The DAG and group a task being created joins.

    ``task_group`` is the one given to the operator, else the innermost open group of
    ``dag``; a task given only a group joins the group's DAG.
    """
    if task_group is not None and not isinstance(task_group, TaskGroup):
        raise DagDefinitionError(f"task_group must be a TaskGroup, not {type(task_group).__name__}")
    group = task_group if task_group is not None else current_task_group(dag)
    if group is None:
        return dag, None
    if dag is not None and group.dag is not dag:
        raise DagDefinitionError(f"task group {group.group_id!r} belongs to DAG {group.dag.dag_id!r}, "
                                 f"not to DAG {dag.dag_id!r}")
    return group.dag, group


def _suffixed(label: str, taken: Callable[[str], bool]) -> str:
    """``label`` itself, or ``base__N`` with the first N that ``taken`` refuses."""
    base = re.sub(rf"{GROUP_ID_SUFFIX}\d+$", "", label)
    number = 1
    while taken(f"{base}{GROUP_ID_SUFFIX}{number}"):
        number += 1
    return f"{base}{GROUP_ID_SUFFIX}{number}"


class TaskGroup(DependencyMixin):
    """A named set of tasks (and groups) of one DAG.

    :param group_id: the group's own name; its ``group_id`` is prefixed with the parent
        group's when that one prefixes.
    :param prefix_group_id: prefix the ids of the tasks and groups created inside with
        ``group_id.`` (default True).
    :param parent_group: the group this one is nested in; default the innermost open group.
    :param dag: the DAG of the group; default the parent group's, else the open ``with DAG``.
    :param default_args: defaults of the operators created inside, over the DAG's (and
        over the parent group's).
    :param tooltip: text a UI shows for the group.
    :param ui_color: fill colour of the group in a UI.
    :param ui_fgcolor: label colour of the group in a UI.
    :param add_suffix_on_collision: when the group_id is taken in the DAG, use
        ``group_id__1``, ``__2``, ... instead of failing.
    """

    def __init__(
        self,
        group_id: str,
        *,
        prefix_group_id: bool = True,
        parent_group: "TaskGroup | None" = None,
        dag: DAG | None = None,
        default_args: dict[str, Any] | None = None,
        tooltip: str = "",
        ui_color: str = DEFAULT_UI_COLOR,
        ui_fgcolor: str = DEFAULT_UI_FGCOLOR,
        add_suffix_on_collision: bool = False,
    ):
        if not isinstance(group_id, str) or not GROUP_ID_PATTERN.fullmatch(group_id):
            raise DagDefinitionError(f"group_id {group_id!r} is invalid: use {GROUP_ID_RULE}")
        if parent_group is not None and not isinstance(parent_group, TaskGroup):
            raise DagDefinitionError(f"task group {group_id!r}: parent_group must be a TaskGroup, "
                                     f"not {type(parent_group).__name__}")
        if dag is not None and not isinstance(dag, DAG):
            raise DagDefinitionError(f"task group {group_id!r}: dag must be a DAG, not {type(dag).__name__}")
        dag = dag or (parent_group.dag if parent_group is not None else None) or get_current_dag()
        if dag is None:
            raise DagDefinitionError(f"task group {group_id!r} is not part of a DAG: create it inside "
                                     f"a `with DAG(...)` block or pass dag=")
        parent = parent_group if parent_group is not None else current_task_group(dag)
        if parent is not None and parent.dag is not dag:
            raise DagDefinitionError(f"task group {group_id!r} of DAG {dag.dag_id!r} cannot be nested in "
                                     f"group {parent.group_id!r} of DAG {parent.dag.dag_id!r}")
        if default_args is not None and not isinstance(default_args, dict):
            raise DagDefinitionError(f"task group {group_id!r}: default_args must be a dict, "
                                     f"not {type(default_args).__name__}")
        if not isinstance(tooltip, str):
            raise DagDefinitionError(f"task group {group_id!r}: tooltip must be a string")

        self.dag: DAG = dag
        self.parent_group: TaskGroup | None = parent
        self.prefix_group_id: bool = bool(prefix_group_id)

        def taken(label: str) -> bool:
            full = parent.child_id(label) if parent is not None else label
            return full in dag.task_group_dict or full in dag.task_dict

        if taken(group_id):
            if not add_suffix_on_collision:
                raise DagDefinitionError(f"DAG {dag.dag_id!r} already has a task group or task with id "
                                         f"{self._full_id(parent, group_id)!r}")
            group_id = _suffixed(group_id, taken)
        self._label: str = group_id
        self.group_id: str = self._full_id(parent, group_id)
        self.default_args: dict[str, Any] = {**(parent.default_args if parent else {}), **(default_args or {})}
        self.tooltip: str = tooltip
        self.ui_color: str = ui_color
        self.ui_fgcolor: str = ui_fgcolor
        #: id → task or group created directly inside, in creation order.
        self.children: dict[str, Any] = {}
        dag.task_group_dict[self.group_id] = self
        if parent is not None:
            parent.children[self.group_id] = self
        self._entered_dag = False

    @staticmethod
    def _full_id(parent: "TaskGroup | None", label: str) -> str:
        return parent.child_id(label) if parent is not None else label

    def __repr__(self) -> str:
        return f"<TaskGroup: {self.group_id}>"

    @property
    def label(self) -> str:
        """The group's own name, without the parent's prefix."""
        return self._label

    @property
    def node_id(self) -> str:
        return self.group_id

    @property
    def dag_id(self) -> str:
        return self.dag.dag_id

    def child_id(self, label: str) -> str:
        """The id a task or group named ``label`` gets inside this group."""
        return f"{self.group_id}.{label}" if self.prefix_group_id else label

    def get_child_by_label(self, label: str) -> Any:
        """The task or group created directly inside under the name ``label``."""
        return self.children[self.child_id(label)]

    def add(self, task: "BaseOperator") -> None:
        """Record ``task`` as created inside this group (operators do this themselves)."""
        self.children[task.task_id] = task
        task.task_group = self

    # -- what is inside ------------------------------------------------------------
    def __iter__(self) -> Iterator["BaseOperator"]:
        """Every task inside, nested groups' included, in creation order."""
        for child in self.children.values():
            if isinstance(child, TaskGroup):
                yield from child
            else:
                yield child

    def has_task(self, task: "BaseOperator") -> bool:
        return any(member is task for member in self)

    @property
    def roots(self) -> list["BaseOperator"]:
        """Tasks inside with no upstream task inside: where the group starts."""
        tasks = list(self)
        ids = {task.task_id for task in tasks}
        return [task for task in tasks if task.upstream_task_ids.isdisjoint(ids)]

    @property
    def leaves(self) -> list["BaseOperator"]:
        """Tasks inside with no downstream task inside: where the group ends."""
        tasks = list(self)
        ids = {task.task_id for task in tasks}
        return [task for task in tasks if task.downstream_task_ids.isdisjoint(ids)]

    # -- linking -------------------------------------------------------------------
    def relate(self, task: Any, *, upstream: bool) -> list["BaseOperator"]:
        """The tasks ``task`` links to when this group is upstream (or downstream) of it."""
        return self.leaves if upstream else self.roots

    def set_downstream(self, others: Any) -> None:
        for leaf in self.leaves:
            leaf.set_downstream(others)

    def set_upstream(self, others: Any) -> None:
        for root in self.roots:
            root.set_upstream(others)

    # -- context manager -----------------------------------------------------------
    def __enter__(self) -> "TaskGroup":
        if get_current_dag() is not self.dag:
            # ``with TaskGroup("g", dag=dag):`` outside the DAG's own block: tasks inside join it.
            self.dag.__enter__()
            self._entered_dag = True
        _open_groups.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Removed wherever it sits (not just from the top), so a group left open by a
        # mismatched exit cannot capture tasks created later.
        for index in range(len(_open_groups) - 1, -1, -1):
            if _open_groups[index] is self:
                del _open_groups[index]
                break
        if self._entered_dag:
            self._entered_dag = False
            self.dag.__exit__(*exc_info)

    # -- stored form ---------------------------------------------------------------
    def serialize(self) -> dict[str, Any]:
        """What the serialized DAG keeps of the group: enough for a UI to draw it."""
        data: dict[str, Any] = {"label": self._label}
        if self.parent_group is not None:
            data["parent"] = self.parent_group.group_id
        if self.tooltip:
            data["tooltip"] = self.tooltip
        if self.ui_color != DEFAULT_UI_COLOR:
            data["ui_color"] = self.ui_color
        if self.ui_fgcolor != DEFAULT_UI_FGCOLOR:
            data["ui_fgcolor"] = self.ui_fgcolor
        data["tasks"] = [key for key, child in self.children.items() if not isinstance(child, TaskGroup)]
        groups = [key for key, child in self.children.items() if isinstance(child, TaskGroup)]
        if groups:
            data["groups"] = groups
        return data


class TaskGroupFunction:
    """A function wrapped by ``@task_group``: each call builds a group by running it inside one.

    The call returns what the function returns when that is not None (a task or
    XComArg to link from), else the group itself, as Airflow does. A second call gets
    ``group_id__1``; the function's docstring is the group's tooltip unless one is given.
    """

    def __init__(self, function: Callable[..., Any], group_kwargs: dict[str, Any]):
        if not callable(function):
            raise DagDefinitionError(f"@task_group must decorate a function, not {function!r}")
        self.function = function
        self.group_kwargs = {"group_id": function.__name__, **group_kwargs}
        functools.update_wrapper(self, function)

    def override(self, **group_kwargs: Any) -> "TaskGroupFunction":
        """The same function with other group arguments, e.g. ``f.override(group_id="x")()``."""
        return TaskGroupFunction(self.function, {**self.group_kwargs, **group_kwargs})

    def expand(self, **_kwargs: Any) -> Any:
        """Airflow 2.5's mapped task groups are not provided: say so instead of an AttributeError."""
        raise DagDefinitionError(f"task group {self.group_kwargs['group_id']!r}: mapped task groups "
                                 f"(@task_group ... .expand) are not provided by crossdock; map the tasks "
                                 f"inside the group with .expand instead")

    partial = expand_kwargs = expand

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        options = {"add_suffix_on_collision": True, **self.group_kwargs}
        group_id = options.pop("group_id")
        with TaskGroup(group_id, **options) as group:
            if self.function.__doc__ and not group.tooltip:
                group.tooltip = inspect.cleandoc(self.function.__doc__)
            returned = self.function(*args, **kwargs)
        return group if returned is None else returned


def task_group(python_callable: Callable[..., Any] | None = None, **group_kwargs: Any) -> Any:
    """Decorate a function as a task group; ``@task_group`` or ``@task_group(group_id=..., tooltip=...)``."""
    _check_group_kwargs(group_kwargs)
    if python_callable is None:
        return lambda function: TaskGroupFunction(function, group_kwargs)
    return TaskGroupFunction(python_callable, group_kwargs)


def _check_group_kwargs(group_kwargs: dict[str, Any]) -> None:
    """A misspelt argument fails where the decorator is written, not at the first call."""
    known = set(inspect.signature(TaskGroup.__init__).parameters) - {"self"}
    unknown = sorted(set(group_kwargs) - known)
    if unknown:
        raise DagDefinitionError(f"@task_group got unexpected arguments {', '.join(map(repr, unknown))}; "
                                 f"it takes {', '.join(sorted(known))}")
