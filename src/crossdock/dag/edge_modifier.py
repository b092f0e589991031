"""Edge labels: ``a >> Label("on success") >> b`` (Airflow's ``airflow.utils.edgemodifier``).

A label stands between the tasks on its two sides. Either side may be given first; each
time one is added, it is linked to every task already on the other side and the DAG
records the label for each such edge (:meth:`~crossdock.dag.dag.DAG.get_edge_info`),
kept in the serialized DAG for a UI. The label makes no task of its own and nothing
about running changes: the scheduler sees ordinary edges.

A task group on either side stands for its edge tasks (leaves upstream, roots
downstream), as it does for ``>>``.
"""

from __future__ import annotations

from typing import Any

from crossdock.dag.baseoperator import BaseOperator, linked_tasks
from crossdock.dag.dependency_mixin import DependencyMixin
from crossdock.dag.exceptions import DagDefinitionError


class EdgeModifier(DependencyMixin):
    """Information added to the edges between the tasks on its two sides.

    :param label: the text shown on each edge.
    """

    def __init__(self, label: str):
        if not isinstance(label, str) or not label:
            raise DagDefinitionError(f"an edge label must be a non-empty string, not {label!r}")
        self.label = label
        self._upstream: list[BaseOperator] = []
        self._downstream: list[BaseOperator] = []

    def __repr__(self) -> str:
        return f"Label({self.label!r})"

    @property
    def info(self) -> dict[str, Any]:
        """What the DAG stores for each edge this label joins."""
        return {"label": self.label}

    # -- adding a side -------------------------------------------------------------
    def _join(self, upstream: BaseOperator, downstream: BaseOperator) -> None:
        upstream.set_downstream(downstream)
        dag = upstream.dag or downstream.dag
        if dag is None:
            raise DagDefinitionError(f"{self!r} joins tasks {upstream.task_id!r} and {downstream.task_id!r}, "
                                     f"which belong to no DAG")
        dag.set_edge_info(upstream.task_id, downstream.task_id, self.info)

    def _add(self, tasks: list[BaseOperator], *, upstream: bool) -> None:
        """Put ``tasks`` on one side, each joined to every task already on the other."""
        side, other_side = (self._upstream, self._downstream) if upstream else (self._downstream, self._upstream)
        for task in tasks:
            for other in other_side:
                self._join(*((task, other) if upstream else (other, task)))
            if task not in side:
                side.append(task)

    def relate(self, task: Any, *, upstream: bool) -> list[BaseOperator]:
        """``task`` was linked to this label (``task >> label`` or ``task << label``).

        The label makes the edges itself, so ``task`` is linked to nothing directly.
        """
        if not isinstance(task, BaseOperator):
            raise TypeError(f"{self!r} can only be linked to tasks, task groups or lists of them, "
                            f"not {type(task).__name__} {task!r}")
        self._add([task], upstream=not upstream)
        return []

    def set_downstream(self, others: Any) -> None:
        self._add(linked_tasks(others, other=self, upstream=False), upstream=False)

    def set_upstream(self, others: Any) -> None:
        self._add(linked_tasks(others, other=self, upstream=True), upstream=True)


def Label(label: str) -> EdgeModifier:  # noqa: N802 - Airflow's name for it
    """An edge label: ``a >> Label("text") >> b`` links a to b and labels the edge."""
    return EdgeModifier(label)
