"""``@dag``: write a DAG as a function that creates its tasks (Airflow's ``airflow.decorators.dag``).

Calling the decorated function builds the DAG and returns it: the function runs inside
``with DAG(...)``, so every task it creates joins. Call it at module level
(``my_dag()`` or ``dag_obj = my_dag()``); the DAG-file loader collects every DAG
constructed while a file is imported, so the result need not be kept. The dag_id is the
function's name unless one is given, and its docstring is the DAG's ``doc_md`` unless
one is given.

Each parameter of the function becomes a DAG param whose default is the value the call
binds (the parameter's default, or the argument passed). Inside the function the name
holds a :class:`DagParam`: handed to a task (a TaskFlow argument, a template field) it
is replaced in the try by the param's value for that run, so a run's conf reaches it.
``from crossdock import dag`` gives the ``crossdock.dag`` package, which is callable as
this decorator (see :mod:`crossdock.dag`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from crossdock.dag.dag import DAG
from crossdock.dag.exceptions import DagDefinitionError, TaskFailure
from crossdock.dag.xcom_arg import XComArg

#: Keyword arguments of ``DAG`` the decorator passes on (everything but the dag_id).
_DAG_PARAMETERS = frozenset(inspect.signature(DAG.__init__).parameters) - {"self", "dag_id"}


class _NoTask:
    """What a :class:`DagParam` refers to instead of a task: linking it links nothing."""

    def relate(self, task: Any, *, upstream: bool) -> list[Any]:
        return []


_NO_TASK = _NoTask()


class DagParam(XComArg):
    """A ``@dag`` function's parameter: the DAG param's value in the try, like an XComArg's.

    It is an :class:`~crossdock.dag.xcom_arg.XComArg` only so the try replaces it where
    it replaces XComArgs; it refers to no task and makes no edge.
    """

    def __init__(self, dag: DAG, name: str):
        super().__init__(_NO_TASK, key=name)  # type: ignore[arg-type]
        self.dag_id = dag.dag_id
        self.name = name

    def __repr__(self) -> str:
        return f"DagParam({self.name!r})"

    def __getitem__(self, key: str) -> XComArg:
        raise TypeError(f"{self!r} cannot be indexed at parse time; index its value inside the task")

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _not_a_task(self, other: Any) -> Any:
        raise TypeError(f"{self!r} is a value, not a task: it cannot be linked with >> or <<")

    __rshift__ = __lshift__ = __rrshift__ = __rlshift__ = _not_a_task

    def resolve(self, context: Any) -> Any:
        """The param's value for this run (the DAG's default, or the run's conf over it)."""
        params = context.get("params") or {}
        if self.name not in params:
            raise TaskFailure(f"DAG {self.dag_id!r} has no param {self.name!r} in this try")
        return params[self.name]


class DagFunction:
    """A function wrapped by ``@dag``: call it to build the DAG, ``.function`` to reach the function."""

    def __init__(self, function: Callable[..., Any], dag_id: str | None, dag_kwargs: dict[str, Any]):
        if not callable(function):
            raise DagDefinitionError(f"@dag must decorate a function, not {function!r}")
        variadic = [parameter.name for parameter in inspect.signature(function).parameters.values()
                    if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)]
        if variadic:
            raise DagDefinitionError(f"@dag {function.__name__!r}: each parameter becomes a DAG param, so "
                                     f"*{variadic[0]} cannot be one; name the parameters")
        self.function = function
        self.dag_id = dag_id or function.__name__
        self.dag_kwargs = dag_kwargs
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> DAG:
        try:
            bound = inspect.signature(self.function).bind(*args, **kwargs)
        except TypeError as exc:
            raise DagDefinitionError(f"@dag {self.dag_id!r}: {exc}") from None
        bound.apply_defaults()
        with DAG(self.dag_id, **self.dag_kwargs) as dag:
            if self.function.__doc__ and not dag.doc_md:
                dag.doc_md = inspect.cleandoc(self.function.__doc__)
            for name, value in bound.arguments.items():
                dag.params[name] = value
            self.function(**{name: DagParam(dag, name) for name in bound.arguments})
        return dag


def dag(dag_id: str | Callable[..., Any] | None = None, **dag_kwargs: Any) -> Any:
    """Decorate a function that creates tasks as a DAG: ``@dag`` or ``@dag(schedule=None, ...)``.

    ``dag_id`` (default: the function's name) and ``dag_kwargs`` are :class:`DAG`'s arguments.
    """
    unknown = sorted(set(dag_kwargs) - _DAG_PARAMETERS)
    if unknown:
        raise DagDefinitionError(f"@dag got unexpected arguments {', '.join(map(repr, unknown))}; "
                                 f"DAG takes {', '.join(sorted(_DAG_PARAMETERS))}")
    if callable(dag_id):
        return DagFunction(dag_id, None, dag_kwargs)
    if dag_id is not None and not isinstance(dag_id, str):
        raise DagDefinitionError(f"@dag: dag_id must be a string, not {type(dag_id).__name__} {dag_id!r}")
    return lambda function: DagFunction(function, dag_id, dag_kwargs)
