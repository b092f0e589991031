"""Clearing task instances: back to be scheduled, to run again (``crossdock tasks clear``).

Airflow's semantics: a cleared task instance loses its state and is scheduled again when
its upstream tasks allow; its try number is kept, so the next try is numbered after the
last, and it gets its full ``retries`` again from there. A finished run with a cleared
task instance becomes running again. A try still queued or running is stopped. How the
change reaches the task instances is :mod:`.state_delivery`'s part (principle 1).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from crossdock.database import create_session, ensure_migrated
from crossdock.models.state_request import CLEAR
from crossdock.operations.lookups import serialized_dag, task_instance_dict, utc_datetime
from crossdock.operations.selection import changes_for, select_runs, select_task_ids, select_task_instances
from crossdock.operations.state_delivery import Change, Delivery, deliver
from crossdock.state import TaskInstanceState as S

#: States ``only_failed`` keeps, and ``only_running``.
FAILED_STATES = frozenset({S.FAILED.value, S.UPSTREAM_FAILED.value})
RUNNING_STATES = frozenset({S.RUNNING.value})


def clear_task_instances(dag_id: str, *, task_ids: Iterable[str] | str | None = None, task_regex: str | None = None,
                         run_id: str | None = None, start_date: datetime | str | None = None,
                         end_date: datetime | str | None = None, downstream: bool = False, upstream: bool = False,
                         only_failed: bool = False, only_running: bool = False,
                         include_past: bool = False, include_future: bool = False,
                         map_indexes: Iterable[int] | None = None, dry_run: bool = False) -> list[dict[str, Any]]:
    """Clear task instances of ``dag_id``; one dict per task instance cleared (its state before).

    :param task_ids: these tasks; :param task_regex: the tasks whose id it matches
        (``re.search``); neither: every task.
    :param run_id: only this run; :param start_date: / :param end_date: only runs whose
        logical date lies in the range (inclusive); none of the three: every run.
    :param downstream: / :param upstream: also every task downstream / upstream of those.
    :param only_failed: only task instances that failed or are upstream_failed;
        :param only_running: only running ones; both: either.
    :param include_past: / :param include_future: with ``run_id``, also the runs before /
        after it (by logical date).
    :param map_indexes: only these elements of a mapped task (None: every one).
    :param dry_run: change nothing, only say what would be cleared.

    Each dict also says how the change was delivered (see :func:`report`).
    """
    ensure_migrated()
    start, end = utc_datetime(start_date, what="start date"), utc_datetime(end_date, what="end date")
    states: set | None = None
    if only_failed or only_running:
        states = set(FAILED_STATES if only_failed else ()) | set(RUNNING_STATES if only_running else ())
    with create_session() as session:
        dag = serialized_dag(session, dag_id)
        chosen = select_task_ids(dag, task_ids=task_ids, task_regex=task_regex, upstream=upstream,
                                 downstream=downstream)
        runs = select_runs(session, dag_id, run_id=run_id, start_date=start, end_date=end,
                           include_past=include_past, include_future=include_future)
        tis = [ti for ti in select_task_instances(session, dag_id, runs, chosen, states=states,
                                                  map_indexes=map_indexes)
               if ti.state is not None]
    if dry_run:
        return report(tis, CLEAR, [], Delivery(applied=False))
    changes = changes_for(CLEAR, tis)
    return report(tis, CLEAR, changes, deliver(changes))


def report(tis, action: str, changes: list[Change], delivery: Delivery) -> list[dict[str, Any]]:
    """The result rows of an action: each task instance (its state before), the action, how
    it was delivered: ``applied`` (written already) and ``request_id`` (the request the
    active scheduler applies in its next loop step, or None)."""
    request_of = {(change.dag_id, change.run_id, change.action): request_id
                  for change, request_id in zip(changes, delivery.request_ids)}
    return [task_instance_dict(ti, action=action, applied=delivery.applied,
                               request_id=request_of.get((ti.dag_id, ti.run_id, action)))
            for ti in tis]
