"""How far a run has got: its state and its task instances counted by state.

What ``dags trigger --wait`` shows while it waits, and what a page showing a run live
polls; one query for the run and one for its task instances.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from sqlalchemy import func, select

from crossdock.database import create_session
from crossdock.models import TaskInstance
from crossdock.operations.lookups import dag_run
from crossdock.state import FINISHED_STATES

#: How a task instance with no state yet (waiting for its upstream) is counted.
NO_STATE = "none"


def count_states(states: Iterable[str | None]) -> dict[str, int]:
    """state → how many, with :data:`NO_STATE` for None, sorted by state."""
    counts = Counter(NO_STATE if state is None else str(state) for state in states)
    return dict(sorted(counts.items()))


def run_progress(dag_id: str, run_id: str) -> dict[str, Any]:
    """``{"dag_id", "run_id", "state", "total", "done", "states": {state: task instances}}``.

    ``done`` counts task instances in a finished state (success, failed, skipped,
    upstream_failed, removed). A run not started yet has no task instances: total 0.
    """
    with create_session() as session:
        run = dag_run(session, dag_id, run_id)
        rows = session.execute(select(TaskInstance.state, func.count()).where(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id).group_by(TaskInstance.state)).all()
    states = dict(sorted((NO_STATE if state is None else state, count) for state, count in rows))
    done = sum(count for state, count in states.items() if state in FINISHED_STATES)
    return {"dag_id": dag_id, "run_id": run_id, "state": run.state, "total": sum(states.values()),
            "done": done, "states": states}
