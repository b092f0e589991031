"""A DAG's grid: its newest runs (columns) by its tasks (rows), nested by task group.

Every row holds one cell per run, aligned with ``dag_runs``; a cell is None where the run
has no task instance of that task (not started yet, or a task added since). A mapped
task's cell sums its instances (``mapped_states``: state → count) and a group's cell
sums its tasks'; either shows the state that most needs a look, in Airflow's order of
priority (failed before running before success).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import select

from crossdock.database import create_session, ensure_migrated
from crossdock.models import DagRun, TaskInstance
from crossdock.operations.errors import BadRequest
from crossdock.operations.reads.dags import parsed_or_not_found, task_groups_of
from crossdock.operations.reads.runs import run_dict

#: Runs a grid shows when the caller names no number.
DEFAULT_GRID_RUNS = 25
#: The most runs one grid may show.
MAX_GRID_RUNS = 365
#: A summary cell shows the first of these its instances are in (None: no state yet).
STATE_PRIORITY = ("failed", "upstream_failed", "up_for_retry", "up_for_reschedule", "queued", "scheduled",
                  "running", "restarting", None, "success", "skipped", "removed")
NO_STATE = "none"


def summary_state(counts: Counter) -> str | None:
    """The state a cell summing ``counts`` (state → how many) is drawn in."""
    for state in STATE_PRIORITY:
        if counts.get(state if state is not None else NO_STATE):
            return state
    return next(iter(counts), None)


def _summary(counts: Counter) -> dict[str, Any]:
    return {"state": summary_state(counts), "mapped_states": dict(counts), "count": sum(counts.values())}


def _label(node_id: str, parent_id: str | None) -> str:
    prefix = f"{parent_id}." if parent_id else ""
    return node_id[len(prefix):] if prefix and node_id.startswith(prefix) else node_id


def _tree(parsed) -> dict[str, Any]:
    """The DAG's tasks in dependency order, each inside its groups (outermost first)."""
    group_of = task_groups_of(parsed)
    root: dict[str, Any] = {"id": None, "label": None, "children": [], "_index": {}}
    for task_id, task in parsed.tasks.items():
        chain, group = [], group_of.get(task_id)
        while group:
            chain.append(group)
            group = parsed.task_groups[group].parent_group_id if group in parsed.task_groups else None
        node = root
        for group_id in reversed(chain):
            child = node["_index"].get(group_id)
            if child is None:
                group_info = parsed.task_groups[group_id]
                child = {"id": group_id, "label": group_info.label, "tooltip": group_info.tooltip,
                         "is_group": True, "children": [], "_index": {}}
                node["_index"][group_id] = child
                node["children"].append(child)
            node = child
        node["children"].append({"id": task_id, "label": _label(task_id, node["id"]), "is_group": False,
                                 "is_mapped": task.mapped is not None, "operator": task.task_type,
                                 "queue": task.queue})
    return root


def _fill(node: dict[str, Any], cells: dict[str, dict[str, dict]], run_ids: list[str]) -> list[Counter]:
    """Give ``node`` (and below) their ``instances``; return its per-run state counts."""
    node.pop("_index", None)
    if not node.get("is_group") and node["id"] is not None:
        per_run = cells.get(node["id"], {})
        counts = [Counter() for _ in run_ids]
        instances = []
        for index, run_id in enumerate(run_ids):
            tis = per_run.get(run_id)
            if not tis:
                instances.append(None)
                continue
            counts[index].update(NO_STATE if ti["state"] is None else ti["state"] for ti in tis)
            if node["is_mapped"]:
                instances.append({**_summary(counts[index]), "try_number": max(ti["try_number"] for ti in tis)})
            else:
                instances.append(tis[0])
        node["instances"] = instances
        return counts
    totals = [Counter() for _ in run_ids]
    for child in node["children"]:
        for index, counter in enumerate(_fill(child, cells, run_ids)):
            totals[index].update(counter)
    if node["id"] is not None:
        node["instances"] = [_summary(counter) if counter else None for counter in totals]
    return totals


def dag_grid(dag_id: str, *, num_runs: int = DEFAULT_GRID_RUNS) -> dict[str, Any]:
    """``{"dag_id", "dag_runs": [oldest … newest], "groups": {"children": [...]}}`` (see the module docstring)."""
    if not 1 <= int(num_runs) <= MAX_GRID_RUNS:
        raise BadRequest(f"num_runs must be between 1 and {MAX_GRID_RUNS}, not {num_runs}")
    ensure_migrated()
    with create_session() as session:
        parsed = parsed_or_not_found(session, dag_id)
        runs = list(session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)
                                    .order_by(DagRun.logical_date.desc(), DagRun.id.desc()).limit(int(num_runs))))
        runs.reverse()
        run_ids = [run.run_id for run in runs]
        rows = session.execute(select(TaskInstance.task_id, TaskInstance.run_id, TaskInstance.map_index,
                                      TaskInstance.state, TaskInstance.try_number, TaskInstance.start_date,
                                      TaskInstance.end_date, TaskInstance.duration)
                               .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id.in_(run_ids))
                               .order_by(TaskInstance.map_index)).all() if run_ids else []
    cells: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        cells[row.task_id][row.run_id].append({
            "state": row.state, "try_number": row.try_number, "map_index": row.map_index,
            "start_date": row.start_date, "end_date": row.end_date, "duration": row.duration})
    tree = _tree(parsed)
    _fill(tree, cells, run_ids)
    return {"dag_id": dag_id, "dag_runs": [run_dict(run) for run in runs], "groups": tree}
