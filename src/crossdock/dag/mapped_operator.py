"""Dynamic task mapping: one task declared, one task instance per element at run time.

``BashOperator.partial(task_id="t", ...).expand(bash_command=[...])``, ``f.expand(x=[...])``,
``f.partial(y=1).expand(x=other())`` and ``.expand_kwargs([...])`` make a
:class:`MappedOperator`. Its inputs are literal lists (their length is known when the DAG
is parsed) or XComArgs (known when the upstream task has run). The scheduler expands it
into map indexes ``0..n-1`` once its upstream tasks are done (see
:mod:`crossdock.scheduler.task_mapping`); several expanded arguments make their cross
product, in ``itertools.product`` order, as Airflow's. In each try, :meth:`MappedOperator.unmap`
builds the ordinary operator for that try's element, and that is what runs.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from crossdock.dag.baseoperator import BaseOperator
from crossdock.dag.exceptions import DagDefinitionError, TaskFailure
from crossdock.dag.xcom_arg import XComArg, xcom_args_in

#: BaseOperator's own parameters: the mapped task takes these itself (queue, retries, pool...).
_BASE_PARAMETERS = frozenset(name for name in inspect.signature(BaseOperator.__init__).parameters
                             if name not in ("self", "task_id"))


def _literal_or_arg(name: str, value: Any, *, kwargs_form: bool, where: str) -> Any:
    if isinstance(value, XComArg):
        return value
    if isinstance(value, dict) and not kwargs_form:
        raise DagDefinitionError(f"{where}: expand({name}=...) got a dict; expand maps over a list "
                                 f"(use expand_kwargs for a list of argument dicts)")
    if not isinstance(value, (list, tuple)):
        raise DagDefinitionError(f"{where}: expand({name}=...) needs a list or an XComArg, not "
                                 f"{type(value).__name__}")
    if kwargs_form and not all(isinstance(item, dict) for item in value):
        raise DagDefinitionError(f"{where}: expand_kwargs needs a list of dicts")
    return list(value)


class MappedOperator(BaseOperator):
    """A task whose instances each run ``operator_class`` with one element of its inputs.

    :param merge_into: None: an element is keyword arguments of ``operator_class``;
        ``"op_kwargs"``: they are merged into its ``op_kwargs`` (a TaskFlow function's arguments).
    """

    def __init__(self, *, operator_class: type, partial_kwargs: dict[str, Any], expand_input: dict[str, Any],
                 kind: str = "expand", merge_into: str | None = None):
        partial_kwargs = dict(partial_kwargs)
        task_id = partial_kwargs.pop("task_id", None)
        super().__init__(task_id, **{name: value for name, value in partial_kwargs.items()
                                     if name in _BASE_PARAMETERS})
        where = f"DAG {self.dag_id!r}, task {self.task_id!r}"
        self.operator_class = operator_class
        self.partial_kwargs = partial_kwargs
        self.kind = kind
        self.merge_into = merge_into
        self.expand_input = {name: _literal_or_arg(name, value, kwargs_form=kind == "expand_kwargs", where=where)
                             for name, value in expand_input.items()}
        if not self.expand_input:
            raise DagDefinitionError(f"{where}: expand() needs at least one argument to map over")
        for value in (*self.expand_input.values(), *self.partial_kwargs.values()):
            for arg in xcom_args_in(value):
                if arg.operator is not self:
                    self.set_upstream(arg.operator)

    @property
    def task_type(self) -> str:
        return self.operator_class.__name__

    @property
    def mapped_spec(self) -> dict[str, Any]:
        """What the scheduler needs to expand it: each input's length, or where its list comes from."""
        inputs = {name: ({"xcom": [value.operator.task_id, value.key]} if isinstance(value, XComArg)
                         else {"length": len(value)}) for name, value in self.expand_input.items()}
        return {"kind": self.kind, "inputs": inputs}

    # -- in the try ---------------------------------------------------------------
    def _lists(self, context: Mapping[str, Any]) -> dict[str, list]:
        lists = {}
        for name, value in self.expand_input.items():
            if isinstance(value, XComArg):
                pulled = context["ti"].xcom_pull(task_ids=value.operator.task_id, key=value.key)
                if not isinstance(pulled, (list, tuple)):
                    raise TaskFailure(f"task {self.task_id!r} maps over the value of task "
                                      f"{value.operator.task_id!r}, which is {type(pulled).__name__}, not a list")
                value = list(pulled)
            lists[name] = value
        return lists

    def element(self, context: Mapping[str, Any], map_index: int) -> dict[str, Any]:
        """The keyword arguments of instance ``map_index`` (cross product of the inputs, in order)."""
        lists = self._lists(context)
        if self.kind == "expand_kwargs":
            (items,) = lists.values()
            return dict(items[map_index])
        chosen: dict[str, Any] = {}
        for name in reversed(list(lists)):
            map_index, position = divmod(map_index, len(lists[name]))
            chosen[name] = lists[name][position]
        return dict(reversed(list(chosen.items())))

    def unmap(self, context: Mapping[str, Any]) -> BaseOperator:
        """The ordinary operator that instance ``context['ti'].map_index`` runs."""
        element = self.element(context, context["ti"].map_index)
        kwargs = {**self.partial_kwargs}
        if self.merge_into:
            kwargs[self.merge_into] = {**(kwargs.get(self.merge_into) or {}), **element}
        else:
            kwargs.update(element)
        kwargs.pop("dag", None)
        kwargs.pop("task_group", None)
        real = self.operator_class(task_id=self.task_id, **kwargs)
        real._dag = self.dag  # what templates and branches look up, without joining the DAG again
        real._upstream, real._downstream = self._upstream, self._downstream
        real.task_group = self.task_group
        return real

    def execute(self, context: dict[str, Any]) -> Any:
        return self.unmap(context).execute(context)


class PartialOperator:
    """``Operator.partial(...)``: the arguments every mapped instance shares."""

    def __init__(self, operator_class: type, kwargs: dict[str, Any], merge_into: str | None = None):
        if "task_id" not in kwargs:
            raise DagDefinitionError(f"{operator_class.__name__}.partial() needs task_id")
        self.operator_class, self.kwargs, self.merge_into = operator_class, kwargs, merge_into

    def expand(self, **mapped: Any) -> XComArg:
        return XComArg(MappedOperator(operator_class=self.operator_class, partial_kwargs=self.kwargs,
                                      expand_input=mapped, merge_into=self.merge_into))

    def expand_kwargs(self, value: Any) -> XComArg:
        return XComArg(MappedOperator(operator_class=self.operator_class, partial_kwargs=self.kwargs,
                                      expand_input={"kwargs": value}, kind="expand_kwargs",
                                      merge_into=self.merge_into))


def partial(cls: type, **kwargs: Any) -> PartialOperator:
    """``BashOperator.partial(task_id=..., ...)`` (installed on BaseOperator as a classmethod)."""
    return PartialOperator(cls, kwargs)


BaseOperator.partial = classmethod(partial)  # type: ignore[attr-defined]

