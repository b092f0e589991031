"""Writing DAGs: the DAG, operators, ``@task`` and their errors.

Nothing here imports the database layer or an executor, so a DAG file (and the
short-lived process that parses it) stays quick to import.

The package itself is callable as Airflow's ``@dag`` decorator: ``from crossdock import
dag`` finds this package (``crossdock`` has no attribute of that name, so Python imports
the subpackage), and a DAG file then writes ``@dag(schedule=None)`` or ``@dag``. Its
class is swapped for a module type with ``__call__`` (see
:mod:`crossdock.dag.dag_decorator`); attribute access is unchanged.
"""

import sys
import types

from crossdock.dag.baseoperator import BaseOperator
from crossdock.lazy_names import lazy_exports
from crossdock.dag.bash_operator import BashOperator
from crossdock.dag.dag import DAG, get_current_dag
from crossdock.dag.decorators import task
from crossdock.dag import mapped_operator as _mapped_operator  # noqa: F401 - installs BaseOperator.partial
from crossdock.dag.exceptions import (
    DagCycleError,
    DagDefinitionError,
    DagFileError,
    DagNotFound,
    DuplicateTaskIdError,
    TaskFailure,
    TaskNotFound,
)
from crossdock.dag.python_operator import PythonOperator
from crossdock.dag.trigger_rule import TriggerRule
from crossdock.dag.weight_rule import WeightRule

__all__ = [
    "DAG", "BaseOperator", "BashOperator", "PythonOperator", "task", "get_current_dag",
    "DagDefinitionError", "DagCycleError", "DuplicateTaskIdError", "TaskNotFound",
    "DagFileError", "DagNotFound", "TaskFailure", "TriggerRule", "WeightRule",
]

#: Authoring names imported on first use: a parse or a try that does not use them skips them.
#: (``@task_group`` is ``crossdock.task_group``: here that name is the module defining it.)
_LAZY = {
    "EmptyOperator": "crossdock.dag.empty_operator",
    "TaskGroup": "crossdock.dag.task_group",
    "Label": "crossdock.dag.edge_modifier",
    "EdgeModifier": "crossdock.dag.edge_modifier",
    "chain": "crossdock.dag.relations",
    "cross_downstream": "crossdock.dag.relations",
}
__all__ += list(_LAZY)
__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


class _CallableDagPackage(types.ModuleType):
    """``crossdock.dag``, also usable as the ``@dag`` decorator."""

    def __call__(self, *args, **kwargs):
        from crossdock.dag.dag_decorator import dag

        return dag(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableDagPackage
