"""EmptyOperator: a task that does nothing, for joins, starts and ends of a DAG.

It is marked ``runs_in_scheduler`` and its serialized task says ``"empty": true``, so
the scheduler can succeed it without sending a try to an executor (as Airflow does
for ``EmptyOperator``). Until the scheduler does, it runs as an ordinary no-op try.
A subclass that overrides :meth:`execute` is not empty any more and is not marked.
"""

from __future__ import annotations

from typing import Any

from crossdock.dag.baseoperator import BaseOperator


class EmptyOperator(BaseOperator):
    """A task whose ``execute`` does nothing (Airflow's ``EmptyOperator``)."""

    #: Succeeded by the scheduler itself when it knows how (see :func:`is_empty_task`).
    runs_in_scheduler: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "execute" in cls.__dict__ and "runs_in_scheduler" not in cls.__dict__:
            cls.runs_in_scheduler = False

    def execute(self, context: dict[str, Any]) -> None:
        """Nothing to do."""


#: Hooks that run in the try: a task having one needs its try even if it is empty.
TRY_CALLBACKS = ("on_execute_callback", "on_success_callback")


def is_empty_task(task: Any) -> bool:
    """Whether the scheduler may succeed ``task`` without a try: an unchanged EmptyOperator
    with no callback that only a try would run."""
    return getattr(task, "runs_in_scheduler", False) is True and not any(
        getattr(task, name, None) for name in TRY_CALLBACKS)
