"""Marking task instances success or failed by hand (``crossdock tasks mark-success|mark-failed``).

A queued or running try of a marked task instance is stopped. Marking success also
resumes what the failure held back, as Airflow's UI does: the tasks downstream of the
marked ones that failed or are upstream_failed (and were not marked themselves) are
cleared, so they run now that their upstream succeeded, and a finished run runs again.
Delivery to the task instances follows :mod:`.state_delivery` (principle 1).
"""

from __future__ import annotations

from typing import Any, Iterable

from crossdock.database import create_session, ensure_migrated
from crossdock.models.state_request import CLEAR, MARK_FAILED, MARK_SUCCESS
from crossdock.operations.clearing import FAILED_STATES, report
from crossdock.operations.errors import BadRequest, NotFound
from crossdock.operations.lookups import dag_run, serialized_dag
from crossdock.operations.selection import (
    changes_for, relatives, select_runs, select_task_ids, select_task_instances,
)
from crossdock.operations.state_delivery import deliver
from crossdock.scheduler.state_changes import needs_change

MARK_STATES = (MARK_SUCCESS, MARK_FAILED)


def mark_task_instances(dag_id: str, *, run_id: str, task_ids: Iterable[str] | str, state: str,
                        downstream: bool = False, upstream: bool = False, past: bool = False,
                        future: bool = False, map_indexes: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Set task instances of one run to ``state``; one dict per task instance changed.

    :param task_ids: the tasks to mark.
    :param state: ``success`` or ``failed``.
    :param downstream: / :param upstream: also mark every task downstream / upstream of them.
    :param past: / :param future: also in the runs before / after this one (by logical date).
    :param map_indexes: only these elements of a mapped task (None: every one). Relatives
        marked with them are marked whole.

    Rows have ``action`` ``success``/``failed`` for a marked task instance and ``clear``
    for one resumed downstream of a success, with ``state`` as it was before.
    """
    if state not in MARK_STATES:
        raise BadRequest(f"a task instance can be marked {' or '.join(MARK_STATES)}, not {state!r}")
    if not task_ids:
        raise BadRequest("name at least one task to mark")
    ensure_migrated()
    with create_session() as session:
        dag = serialized_dag(session, dag_id)
        named = set([task_ids] if isinstance(task_ids, str) else task_ids)
        chosen = select_task_ids(dag, task_ids=task_ids, upstream=upstream, downstream=downstream)
        run = dag_run(session, dag_id, run_id)
        runs = select_runs(session, dag_id, run_id=run_id, include_past=past, include_future=future)
        found = select_task_instances(session, dag_id, runs, chosen)
        if map_indexes is not None:
            wanted = set(map_indexes)
            found = [ti for ti in found if ti.task_id not in named or ti.map_index in wanted]
        if not found:
            what = f" map index {', '.join(map(str, sorted(wanted)))}" if map_indexes is not None else ""
            raise NotFound(f"run {run_id!r} of DAG {dag_id!r} has no task instances of "
                           f"{', '.join(map(repr, sorted(chosen)))}{what} yet (it is {run.state})")
        marked = [ti for ti in found if needs_change(ti, state)]
        resumed = []
        if state == MARK_SUCCESS and not downstream:
            after = relatives(dag, chosen, upstream=False, downstream=True) - chosen
            resumed = select_task_instances(session, dag_id, runs, after, states=set(FAILED_STATES))
    changes = changes_for(state, marked) + changes_for(CLEAR, resumed)
    delivery = deliver(changes)
    return report(marked, state, changes, delivery) + report(resumed, CLEAR, changes, delivery)
