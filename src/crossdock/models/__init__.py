"""crossdock's metadata tables; importing this package registers all of them."""

from crossdock.models.base import Base
from crossdock.models.dag import DagModel, SerializedDagModel
from crossdock.models.dagrun import DagRun
from crossdock.models.import_error import DagImportError
from crossdock.models.job import Job
from crossdock.models.pool import DEFAULT_POOL_NAME, Pool
from crossdock.models.taskinstance import TaskInstance
from crossdock.models.taskinstancekey import TaskInstanceKey

__all__ = [
    "Base", "DagModel", "SerializedDagModel", "DagRun", "DagImportError", "Job",
    "Pool", "DEFAULT_POOL_NAME", "TaskInstance", "TaskInstanceKey",
]
