"""``chain`` and ``cross_downstream``: many edges in one call (Airflow's, from baseoperator).

Each accepts what ``>>`` accepts: tasks, XComArgs (a TaskFlow call's result), task
groups and edge labels, and lists of them. Every argument is checked before the first
edge is made, so a bad call changes nothing.
"""

from __future__ import annotations

from typing import Any, Sequence

from crossdock.dag.exceptions import DagDefinitionError

_LISTS = (list, tuple)


def _is_linkable(item: Any) -> bool:
    return not isinstance(item, (str, bytes, type, *_LISTS)) and callable(getattr(item, "set_downstream", None))


def _check_linkable(item: Any, *, where: str) -> None:
    if not _is_linkable(item):
        raise TypeError(f"{where} can only take tasks, XComArgs, task groups, edge labels or lists of "
                        f"them, not {type(item).__name__} {item!r}")


def chain(*tasks: Any) -> None:
    """Link each argument to the next: ``chain(t1, [t2, t3], [t4, t5], t6)``.

    A single item next to a list links to (or from) every member of the list; two lists
    next to each other must be of the same length and are linked pairwise (t2 >> t4,
    t3 >> t5), as in Airflow.
    """
    for position, item in enumerate(tasks, start=1):
        members = item if isinstance(item, _LISTS) else [item]
        for member in members:
            _check_linkable(member, where=f"chain (argument {position})")
    for position, (up, down) in enumerate(zip(tasks, tasks[1:]), start=1):
        if isinstance(up, _LISTS) and isinstance(down, _LISTS) and len(up) != len(down):
            raise DagDefinitionError(
                f"chain: lists next to each other must have the same length; argument {position} has "
                f"{len(up)} items and argument {position + 1} has {len(down)}")
    for up, down in zip(tasks, tasks[1:]):
        if isinstance(up, _LISTS) and isinstance(down, _LISTS):
            for up_item, down_item in zip(up, down):
                up_item.set_downstream(down_item)
        elif isinstance(up, _LISTS):
            down.set_upstream(list(up))
        else:
            up.set_downstream(down)


def cross_downstream(from_tasks: Sequence[Any], to_tasks: Any) -> None:
    """Make every task of ``to_tasks`` downstream of every task of ``from_tasks``."""
    if not isinstance(from_tasks, _LISTS):
        raise TypeError(f"cross_downstream: from_tasks must be a list of tasks, not "
                        f"{type(from_tasks).__name__} {from_tasks!r}")
    for item in from_tasks:
        _check_linkable(item, where="cross_downstream (from_tasks)")
    for item in to_tasks if isinstance(to_tasks, _LISTS) else [to_tasks]:
        _check_linkable(item, where="cross_downstream (to_tasks)")
    for item in from_tasks:
        item.set_downstream(to_tasks)
