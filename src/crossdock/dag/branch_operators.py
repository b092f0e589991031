"""Branching and short-circuiting: a task that decides which of its downstream tasks run.

As in Airflow, the deciding task's try ends in success and the tasks it did not choose
are skipped; their own downstream tasks then follow their trigger rules (a join after
a branch usually wants ``none_failed_min_one_success``). The try cannot change other
tasks' states itself (it has no database, design principle 1): it reports its choice
with its outcome and the scheduler skips the others when it applies the success.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from crossdock.dag.baseoperator import BaseOperator
from crossdock.dag.exceptions import TaskFailure
from crossdock.dag.python_operator import PythonOperator

log = logging.getLogger("crossdock.task")


def chosen_task_ids(task: BaseOperator, chosen: Any) -> list[str]:
    """The task ids a branch chose (None, one id, or several), each checked to be directly
    downstream of ``task``; a wrong one fails the try naming it and the choices there were."""
    if chosen is None:
        ids: list[str] = []
    elif isinstance(chosen, str):
        ids = [chosen]
    elif isinstance(chosen, Iterable):
        ids = list(chosen)
    else:
        raise TaskFailure(f"branch task {task.task_id!r} returned {chosen!r}; a branch returns a task id, "
                          f"a list of task ids or None")
    downstream = task.downstream_task_ids
    wrong = [task_id for task_id in ids if not isinstance(task_id, str) or task_id not in downstream]
    if wrong:
        raise TaskFailure(f"branch task {task.task_id!r} chose {', '.join(map(repr, wrong))}, which "
                          f"{'is' if len(wrong) == 1 else 'are'} not directly downstream of it "
                          f"(downstream: {', '.join(sorted(downstream)) or 'none'})")
    return ids


def follow_branches(task: BaseOperator, context: dict[str, Any], chosen: Any) -> None:
    ids = chosen_task_ids(task, chosen)
    log.info("Following branch %s", ids)
    context["ti"].values.follow_only(ids)


class BaseBranchOperator(BaseOperator):
    """Subclass and implement :meth:`choose_branch` to return the task id(s) to follow."""

    def choose_branch(self, context: dict[str, Any]) -> str | Iterable[str] | None:
        raise NotImplementedError(f"{self.task_type} does not implement choose_branch()")

    def execute(self, context: dict[str, Any]) -> Any:
        chosen = self.choose_branch(context)
        follow_branches(self, context, chosen)
        return chosen


class BranchPythonOperator(PythonOperator):
    """A PythonOperator whose callable returns the task id(s) to follow; the rest are skipped."""

    def execute(self, context: dict[str, Any]) -> Any:
        chosen = super().execute(context)
        follow_branches(self, context, chosen)
        return chosen


class ShortCircuitOperator(PythonOperator):
    """Go on only when the callable returns something truthy; otherwise skip downstream.

    :param ignore_downstream_trigger_rules: True (Airflow's default): every task
        downstream, direct or not, is skipped. False: only the direct downstream tasks
        are skipped and the others follow their trigger rules.
    """

    def __init__(self, task_id: str, python_callable: Any = None, *,
                 ignore_downstream_trigger_rules: bool = True, **kwargs: Any):
        super().__init__(task_id, python_callable, **kwargs)
        self.ignore_downstream_trigger_rules = bool(ignore_downstream_trigger_rules)

    def execute(self, context: dict[str, Any]) -> Any:
        condition = super().execute(context)
        if condition:
            log.info("Condition result is %r; proceeding", condition)
            return condition
        log.info("Condition result is %r; skipping downstream tasks", condition)
        if self.ignore_downstream_trigger_rules:
            context["ti"].values.skip_descendants()
        else:
            context["ti"].values.follow_only([])
        return condition
