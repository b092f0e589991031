"""``@task``: write a task as a plain function.

Calling the decorated function inside a DAG creates a task that will call it later;
it does not run the function. The task_id is the function's name, with ``__1``,
``__2``, ... appended when the same function is used again in one DAG. crossdock has
no XCom: the call returns the task (for ``>>``), and passing one task's call result
to another is refused with an error saying so, instead of silently passing an object.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from crossdock.dag.baseoperator import BaseOperator
from crossdock.dag.dag import get_current_dag
from crossdock.dag.exceptions import DagDefinitionError
from crossdock.dag.python_operator import PythonOperator

#: Joins a reused function's name and its use count in generated task ids.
TASK_ID_SUFFIX = "__"


def _unique_task_id(base: str, dag: Any) -> str:
    if dag is None or base not in dag.task_dict:
        return base
    number = 1
    while f"{base}{TASK_ID_SUFFIX}{number}" in dag.task_dict:
        number += 1
    return f"{base}{TASK_ID_SUFFIX}{number}"


class TaskFunction:
    """A function wrapped by ``@task``: call it to add a task, use ``.function`` to call it directly."""

    def __init__(self, function: Callable[..., Any], operator_kwargs: dict[str, Any]):
        if not callable(function):
            raise DagDefinitionError(f"@task must decorate a function, not {function!r}")
        self.function = function
        self.operator_kwargs = operator_kwargs
        functools.update_wrapper(self, function)

    def override(self, **operator_kwargs: Any) -> "TaskFunction":
        """The same function with other operator arguments, e.g. ``f.override(task_id="x")()``."""
        return TaskFunction(self.function, {**self.operator_kwargs, **operator_kwargs})

    def __call__(self, *args: Any, **kwargs: Any) -> PythonOperator:
        for value in (*args, *kwargs.values()):
            if isinstance(value, BaseOperator):
                raise DagDefinitionError(
                    f"@task {self.function.__name__!r} was passed task {value.task_id!r} as an "
                    f"argument; crossdock does not pass values between tasks (no XCom), "
                    f"so link them with {value.task_id} >> {self.function.__name__} instead")
        options = dict(self.operator_kwargs)
        dag = options.get("dag") or get_current_dag()
        task_id = _unique_task_id(options.pop("task_id", self.function.__name__), dag)
        return PythonOperator(task_id, self.function, op_args=args, op_kwargs=kwargs, **options)


def task(python_callable: Callable[..., Any] | None = None, **operator_kwargs: Any) -> Any:
    """Decorate a function as a task; ``@task`` or ``@task(queue="kubernetes", retries=2)``."""
    if python_callable is None:
        return lambda function: TaskFunction(function, operator_kwargs)
    return TaskFunction(python_callable, operator_kwargs)


#: Airflow spells the Python flavour ``@task.python``.
task.python = task  # type: ignore[attr-defined]
