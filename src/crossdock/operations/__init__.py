"""What users do to DAGs, runs and tasks, implemented once (design principle 9).

The CLI, the REST API and the web UI call these functions and nothing below them, so
an action has one implementation, one set of rules and one set of tests. Every function
takes keyword arguments after the DAG id, returns plain dicts and lists (JSON-ready but
for datetimes), and fails with an :class:`~crossdock.operations.errors.OperationError`
whose ``status`` says what went wrong.

How clears and marks respect principle 1 (only the active scheduler writes the task
states it owns) is :mod:`crossdock.operations.state_delivery`'s docstring.
"""

from __future__ import annotations

from crossdock.lazy_names import lazy_exports

_LAZY = {
    "trigger_dag": "crossdock.operations.dag_runs",
    "delete_dag_run": "crossdock.operations.dag_runs",
    "delete_dag": "crossdock.operations.dag_runs",
    "set_paused": "crossdock.operations.pausing",
    "clear_task_instances": "crossdock.operations.clearing",
    "mark_task_instances": "crossdock.operations.marking",
    "backfill": "crossdock.operations.backfill",
    "run_progress": "crossdock.operations.progress",
    "list_pools": "crossdock.operations.pools",
    "get_pool": "crossdock.operations.pools",
    "set_pool": "crossdock.operations.pools",
    "delete_pool": "crossdock.operations.pools",
    "import_pools": "crossdock.operations.pools",
    "export_pools": "crossdock.operations.pools",
    "scheduler_status": "crossdock.operations.state_delivery",
    "parse_dags_folder_into_db": "crossdock.operations.dag_parsing",
    "OperationError": "crossdock.operations.errors",
    "BadRequest": "crossdock.operations.errors",
    "NotFound": "crossdock.operations.errors",
    "Conflict": "crossdock.operations.errors",
    "Unavailable": "crossdock.operations.errors",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
