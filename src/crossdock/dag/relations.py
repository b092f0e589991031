"""``chain``, ``chain_linear`` and ``cross_downstream``: many edges in one call (Airflow's,
from baseoperator).

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


def chain_linear(*elements: Any) -> None:
    """Link every task of each argument to every task of the next (Airflow 2.7's ``chain_linear``).

    ``chain_linear(t1, [t2, t3], [t4, t5], t6)`` makes t1 >> t2, t3; both of t2, t3 >> both
    of t4, t5; both of those >> t6 — lists of any lengths, unlike ``chain``'s pairwise lists.
    Edge labels are refused (there is no single edge to label), and so is a call that would
    set no edge at all (one argument: usually a list passed without ``*``).
    """
    from crossdock.dag.edge_modifier import EdgeModifier

    if not elements:
        raise DagDefinitionError("chain_linear: no tasks given; nothing to do")
    for position, item in enumerate(elements, start=1):
        for member in item if isinstance(item, _LISTS) else [item]:
            if isinstance(member, EdgeModifier):
                raise DagDefinitionError(f"chain_linear (argument {position}): edge labels are not supported")
            _check_linkable(member, where=f"chain_linear (argument {position})")
    if len(elements) < 2:
        raise DagDefinitionError("chain_linear: one argument sets no dependency; did you forget to "
                                 "unpack a list with *?")
    for up, down in zip(elements, elements[1:]):
        for member in up if isinstance(up, _LISTS) else [up]:
            member.set_downstream(list(down) if isinstance(down, _LISTS) else down)


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
