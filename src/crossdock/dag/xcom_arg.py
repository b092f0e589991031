"""``XComArg``: a reference, in a DAG file, to a value a task will push when it runs.

``task.output``, a TaskFlow call's result and ``result["key"]`` are XComArgs. Used as an
argument of another task (an ``op_args`` item, a template field of any operator) it makes
that task depend on the one that pushes, and is replaced by the pushed value in the try,
just before ``execute`` (with the template fields, see :mod:`crossdock.runner.templating`).
It also links like the task it refers to: ``extract() >> report``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Iterator

from crossdock.dag.exceptions import XComError
from crossdock.dag.xcom_values import XCOM_RETURN_KEY

if TYPE_CHECKING:
    from crossdock.dag.baseoperator import BaseOperator

_MISSING = object()


class XComArg:
    """The value ``operator`` pushes under ``key`` (``return_value`` by default)."""

    def __init__(self, operator: "BaseOperator", key: str = XCOM_RETURN_KEY):
        self.operator = operator
        self.key = key

    def __repr__(self) -> str:
        return f"XComArg({self.operator.task_id!r}, key={self.key!r})"

    def __getitem__(self, key: str) -> "XComArg":
        """One key of a task with ``multiple_outputs``: ``transform(...)["total"]``."""
        if not isinstance(key, str):
            raise TypeError(f"an XComArg key is a string, not {key!r}")
        return XComArg(self.operator, key)

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(f"{self!r} is not iterable: its value exists only when the task runs "
                        f"(index it by key, or pass it to a task)")

    def __getattr__(self, name: str) -> Any:
        # ``result.task_id``, ``result.set_downstream(...)``: what the operator has.
        if name.startswith("__") or name in ("operator", "key"):
            raise AttributeError(name)
        return getattr(self.operator, name)

    # -- linking, as the operator --------------------------------------------------
    def __rshift__(self, other: Any) -> Any:
        self.operator.set_downstream(other)
        return other

    def __lshift__(self, other: Any) -> Any:
        self.operator.set_upstream(other)
        return other

    def __rrshift__(self, other: Any) -> "XComArg":
        self.operator.set_upstream(other)
        return self

    def __rlshift__(self, other: Any) -> "XComArg":
        self.operator.set_downstream(other)
        return self

    # -- in the try ----------------------------------------------------------------
    def resolve(self, context: Any) -> Any:
        """The pushed value; a missing one fails the try (Airflow's XComNotFound)."""
        value = context["ti"].xcom_pull(task_ids=self.operator.task_id, key=self.key, default=_MISSING)
        if value is _MISSING:
            raise XComError(f"task {self.operator.task_id!r} pushed no XCom {self.key!r}, which task "
                            f"{context['ti'].task_id!r} takes as an argument")
        return value


def nested_leaves(value: Any) -> Iterator[Any]:
    """Every value inside ``value`` that is not a container (lists, tuples, sets and dict
    values searched): what a template field's checks look at."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from nested_leaves(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from nested_leaves(item)
    else:
        yield value


def xcom_args_in(value: Any) -> Iterator[XComArg]:
    """Every XComArg inside ``value``."""
    return (leaf for leaf in nested_leaves(value) if isinstance(leaf, XComArg))
