"""Writing DAGs: the DAG, operators, ``@task`` and their errors.

Nothing here imports the database layer or an executor, so a DAG file (and the
short-lived process that parses it) stays quick to import.
"""

from crossdock.dag.baseoperator import BaseOperator
from crossdock.dag.bash_operator import BashOperator
from crossdock.dag.dag import DAG, get_current_dag
from crossdock.dag.decorators import task
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
