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
from crossdock.operations.selection import changes_for, relatives, select_task_ids, select_task_instances
from crossdock.operations.state_delivery import deliver
from crossdock.scheduler.state_changes import needs_change

MARK_STATES = (MARK_SUCCESS, MARK_FAILED)


def mark_task_instances(dag_id: str, *, run_id: str, task_ids: Iterable[str] | str, state: str,
                        downstream: bool = False, upstream: bool = False) -> list[dict[str, Any]]:
    """Set task instances of one run to ``state``; one dict per task instance changed.

    :param task_ids: the tasks to mark (every map index of a mapped task).
    :param state: ``success`` or ``failed``.
    :param downstream: / :param upstream: also mark every task downstream / upstream of them.

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
        chosen = select_task_ids(dag, task_ids=task_ids, upstream=upstream, downstream=downstream)
        run = dag_run(session, dag_id, run_id)
        found = select_task_instances(session, dag_id, [run], chosen)
        if not found:
            raise NotFound(f"run {run_id!r} of DAG {dag_id!r} has no task instances of "
                           f"{', '.join(map(repr, sorted(chosen)))} yet (it is {run.state})")
        marked = [ti for ti in found if needs_change(ti, state)]
        resumed = []
        if state == MARK_SUCCESS and not downstream:
            after = relatives(dag, chosen, upstream=False, downstream=True) - chosen
            resumed = select_task_instances(session, dag_id, [run], after, states=set(FAILED_STATES))
    changes = changes_for(state, marked) + changes_for(CLEAR, resumed)
    delivery = deliver(changes)
    return report(marked, state, changes, delivery) + report(resumed, CLEAR, changes, delivery)
