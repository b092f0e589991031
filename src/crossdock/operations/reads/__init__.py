"""What users read about DAGs, runs, task instances, logs and queues, implemented once.

The REST API and the web UI call these (the CLI may too), so a listing has one query
and one shape everywhere. Each function takes keyword arguments, returns plain dicts
(JSON-ready but for datetimes) using Airflow 2's stable REST API field names where it
has them, and fails with a :class:`~crossdock.operations.errors.OperationError` (a
``NotFound`` naming what does not exist). Listings are paged: ``limit`` and ``offset``
in, ``total_entries`` (before paging) out.
"""

from __future__ import annotations

from crossdock.lazy_names import lazy_exports

_LAZY = {
    "list_dags": "crossdock.operations.reads.dags",
    "get_dag": "crossdock.operations.reads.dags",
    "list_tasks": "crossdock.operations.reads.dags",
    "list_import_errors": "crossdock.operations.reads.dags",
    "get_import_error": "crossdock.operations.reads.dags",
    "list_dag_runs": "crossdock.operations.reads.runs",
    "get_dag_run": "crossdock.operations.reads.runs",
    "list_task_instances": "crossdock.operations.reads.task_instances",
    "get_task_instance": "crossdock.operations.reads.task_instances",
    "dag_grid": "crossdock.operations.reads.grid",
    "read_task_log": "crossdock.operations.reads.logs",
    "list_queues": "crossdock.operations.reads.queues",
    "list_connections": "crossdock.operations.reads.connections",
    "get_connection": "crossdock.operations.reads.connections",
    "register_known_secrets": "crossdock.operations.reads.connections",
    "DEFAULT_LIMIT": "crossdock.operations.reads.paging",
    "MAX_LIMIT": "crossdock.operations.reads.paging",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
