"""``@task``: write a task as a plain function (Airflow's TaskFlow API).

Calling the decorated function inside a DAG creates a task that will call it later;
it does not run the function. The call returns an :class:`~crossdock.dag.xcom_arg.XComArg`
for the value the function will return: pass it to another ``@task`` call (or index it,
``result["key"]``) and that task depends on this one and gets the value as its
argument, or link it like a task (``extract() >> report``). The task_id is the
function's name, with ``__1``, ``__2``, ... appended when the same function is used
again in one DAG; inside a task group it gets the group's prefix (``group.name``).
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from crossdock.dag.baseoperator import BaseOperator
from crossdock.dag.branch_operators import BranchPythonOperator, ShortCircuitOperator
from crossdock.dag.dag import get_current_dag
from crossdock.dag.exceptions import DagDefinitionError
from crossdock.dag.python_operator import PythonOperator
from crossdock.dag.task_group import group_for_new_task
from crossdock.dag.xcom_arg import XComArg

if TYPE_CHECKING:
    from crossdock.dag.mapped_operator import PartialOperator

#: Joins a reused function's name and its use count in generated task ids.
TASK_ID_SUFFIX = "__"


def _unique_task_id(base: str, dag: Any, group: Any = None) -> str:
    """``base``, or ``base__N`` when the id it gets (with the group's prefix) is taken.
    The operator adds the prefix itself, so what is returned has none."""
    def taken(task_id: str) -> bool:
        return (group.child_id(task_id) if group is not None else task_id) in dag.task_dict

    if dag is None or not taken(base):
        return base
    number = 1
    while taken(f"{base}{TASK_ID_SUFFIX}{number}"):
        number += 1
    return f"{base}{TASK_ID_SUFFIX}{number}"


def returns_mapping(function: Callable[..., Any]) -> bool:
    """Whether the function is annotated to return a dict (Airflow then sets ``multiple_outputs``)."""
    if "return" not in getattr(function, "__annotations__", {}):
        return False
    try:
        returned = typing.get_type_hints(function).get("return", Any)
    except Exception:  # an annotation that does not evaluate says nothing certain
        return False
    origin = getattr(returned, "__origin__", returned)
    return isinstance(origin, type) and issubclass(origin, Mapping)


class TaskFunction:
    """A function wrapped by ``@task``: call it to add a task, use ``.function`` to call it directly."""

    def __init__(self, function: Callable[..., Any], operator_kwargs: dict[str, Any],
                 operator_class: type = PythonOperator):
        if not callable(function):
            raise DagDefinitionError(f"@task must decorate a function, not {function!r}")
        self.function = function
        self.operator_kwargs = operator_kwargs
        self.operator_class = operator_class
        functools.update_wrapper(self, function)

    def override(self, **operator_kwargs: Any) -> "TaskFunction":
        """The same function with other operator arguments, e.g. ``f.override(task_id="x")()``."""
        return TaskFunction(self.function, {**self.operator_kwargs, **operator_kwargs}, self.operator_class)

    def partial(self, **fixed: Any) -> "PartialOperator":
        """The arguments every mapped instance shares: ``f.partial(y=1).expand(x=[1, 2])``."""
        from crossdock.dag.mapped_operator import PartialOperator

        options = dict(self.operator_kwargs)
        options.setdefault("multiple_outputs", returns_mapping(self.function))
        dag, group = group_for_new_task(options.get("dag") or get_current_dag(), options.get("task_group"))
        task_id = _unique_task_id(options.pop("task_id", self.function.__name__), dag, group)
        return PartialOperator(self.operator_class, {"task_id": task_id, "python_callable": self.function,
                                                     "op_kwargs": fixed, **options}, merge_into="op_kwargs")

    def expand(self, **mapped: Any) -> XComArg:
        """One task instance per element: ``f.expand(x=[1, 2, 3])`` or over an upstream's list."""
        return self.partial().expand(**mapped)

    def expand_kwargs(self, value: Any) -> XComArg:
        """One task instance per dict of arguments."""
        return self.partial().expand_kwargs(value)

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        for value in (*args, *kwargs.values()):
            if isinstance(value, BaseOperator):
                raise DagDefinitionError(
                    f"@task {self.function.__name__!r} was passed task {value.task_id!r} itself as an "
                    f"argument; pass {value.task_id}.output for the value it returns, or link the "
                    f"tasks with >> if no value is needed")
        options = dict(self.operator_kwargs)
        options.setdefault("multiple_outputs", returns_mapping(self.function))
        dag, group = group_for_new_task(options.get("dag") or get_current_dag(), options.get("task_group"))
        task_id = _unique_task_id(options.pop("task_id", self.function.__name__), dag, group)
        # XComArgs among the arguments link the new task to their tasks (op_args and
        # op_kwargs are template fields) and are resolved to values in the try.
        operator = self.operator_class(task_id, self.function, op_args=args, op_kwargs=kwargs, **options)
        return XComArg(operator)


def task(python_callable: Callable[..., Any] | None = None, **operator_kwargs: Any) -> Any:
    """Decorate a function as a task; ``@task`` or ``@task(queue="kubernetes", retries=2)``."""
    if python_callable is None:
        return lambda function: TaskFunction(function, operator_kwargs)
    return TaskFunction(python_callable, operator_kwargs)


def _flavour(operator_class: type) -> Callable[..., Any]:
    """``@task.branch``-style decorators: ``@task`` with another operator class."""
    def decorate(python_callable: Callable[..., Any] | None = None, **operator_kwargs: Any) -> Any:
        if python_callable is None:
            return lambda function: TaskFunction(function, operator_kwargs, operator_class)
        return TaskFunction(python_callable, operator_kwargs, operator_class)
    return decorate


#: Airflow spells the Python flavour ``@task.python``.
task.python = task  # type: ignore[attr-defined]
#: ``@task.branch``: the function returns the task id(s) to follow (BranchPythonOperator).
task.branch = _flavour(BranchPythonOperator)  # type: ignore[attr-defined]
#: ``@task.short_circuit``: downstream runs only when the function returns something truthy.
task.short_circuit = _flavour(ShortCircuitOperator)  # type: ignore[attr-defined]
