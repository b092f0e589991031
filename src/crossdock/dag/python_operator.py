"""PythonOperator: run a Python callable as a task."""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

from crossdock.dag.baseoperator import BaseOperator

log = logging.getLogger("crossdock.task")


def context_arguments(func: Callable[..., Any], context: Mapping[str, Any], *,
                      op_args: Sequence[Any] = (), op_kwargs: Mapping[str, Any] | None = None
                      ) -> dict[str, Any]:
    """The context entries ``func`` can accept, by name.

    A callable with ``**context`` gets every key; otherwise only the keys that match one
    of its parameter names, so ``def f(): ...`` and ``def f(ti, run_id): ...`` both work.
    Parameters already filled by ``op_args`` / ``op_kwargs`` are left alone.
    """
    import inspect

    op_kwargs = op_kwargs or {}
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        return {}
    positional = [p.name for p in parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    taken = set(positional[:len(op_args)]) | set(op_kwargs)
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        names = [p.name for p in parameters.values() if p.kind is p.POSITIONAL_ONLY]
        return {key: value for key, value in context.items() if key not in taken and key not in names}
    return {name: context[name] for name, p in parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and name in context and name not in taken}


class PythonOperator(BaseOperator):
    """Call ``python_callable(*op_args, **op_kwargs, **<matching context>)``.

    :param python_callable: the function to call; its return value is logged.
    :param op_args: positional arguments for it.
    :param op_kwargs: keyword arguments for it.
    :param templates_dict: values rendered as templates and handed to the callable as
        ``templates_dict`` (``op_args`` and ``op_kwargs`` are rendered too).
    """

    template_fields = ("templates_dict", "op_args", "op_kwargs")

    def __init__(self, task_id: str, python_callable: Callable[..., Any] | None = None, *,
                 op_args: Sequence[Any] | None = None, op_kwargs: Mapping[str, Any] | None = None,
                 templates_dict: Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(task_id, **kwargs)
        set_python_call(self, python_callable, op_args, op_kwargs, templates_dict)

    def execute(self, context: dict[str, Any]) -> Any:
        result = call_python(self, context)
        log.info("Done. Returned value was: %r", result)
        return result


def set_python_call(task: BaseOperator, python_callable: Any, op_args: Sequence[Any] | None,
                    op_kwargs: Mapping[str, Any] | None, templates_dict: Mapping[str, Any] | None) -> None:
    """Check and keep what a Python task calls (PythonOperator's, and PythonSensor's poke)."""
    if not callable(python_callable):
        raise task._definition_error(f"python_callable must be callable, not {python_callable!r}")
    if op_kwargs is not None and not isinstance(op_kwargs, Mapping):
        raise task._definition_error("op_kwargs must be a dict")
    if templates_dict is not None and not isinstance(templates_dict, Mapping):
        raise task._definition_error("templates_dict must be a dict")
    task.python_callable = python_callable
    task.op_args = list(op_args or ())
    task.op_kwargs = dict(op_kwargs or {})
    task.templates_dict = dict(templates_dict) if templates_dict is not None else None


def call_python(task: Any, context: Mapping[str, Any]) -> Any:
    """``python_callable(*op_args, **op_kwargs, **<the context keys it takes>)``."""
    context = {**context, "templates_dict": task.templates_dict}
    extra = context_arguments(task.python_callable, context, op_args=task.op_args, op_kwargs=task.op_kwargs)
    return task.python_callable(*task.op_args, **task.op_kwargs, **extra)
