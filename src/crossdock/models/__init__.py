"""crossdock's metadata tables.

Names resolve on first use, so ``crossdock.models.taskinstancekey`` (imported by every
worker and pod) does not drag SQLAlchemy's table definitions into processes that never
touch the database. :func:`load_all` registers every table at once (migrations need that).
"""

from __future__ import annotations

import importlib

from crossdock.lazy_names import lazy_exports

_LAZY = {
    "Base": "crossdock.models.base",
    "DagModel": "crossdock.models.dag",
    "SerializedDagModel": "crossdock.models.dag",
    "DagRun": "crossdock.models.dagrun",
    "DagImportError": "crossdock.models.import_error",
    "Job": "crossdock.models.job",
    "Pool": "crossdock.models.pool",
    "SchedulerLease": "crossdock.models.scheduler_lease",
    "StateRequest": "crossdock.models.state_request",
    "DEFAULT_POOL_NAME": "crossdock.models.pool",
    "TaskInstance": "crossdock.models.taskinstance",
    "TaskInstanceKey": "crossdock.models.taskinstancekey",
    "XCom": "crossdock.models.xcom",
}

__all__ = [*_LAZY, "load_all"]

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


def load_all():
    """Import every table module and return the shared declarative Base."""
    for module in set(_LAZY.values()):
        importlib.import_module(module)
    from crossdock.models.base import Base

    return Base
