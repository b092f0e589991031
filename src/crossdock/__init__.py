"""crossdock: a small, fast workflow runner with a hybrid Celery + Kubernetes executor.

``from crossdock import DAG, task, BashOperator, PythonOperator, Param`` is the authoring API.
The names are resolved on first use, so ``import crossdock`` alone (done by every CLI
call, worker and pod) imports neither the database layer nor Celery.
``from crossdock import dag`` is the ``@dag`` decorator: the ``crossdock.dag`` package,
which is callable (see :mod:`crossdock.dag`).
"""

from __future__ import annotations

from crossdock.lazy_names import lazy_exports

__version__ = "0.1.0"

#: Public name → module that defines it.
_LAZY: dict[str, str] = {
    "DAG": "crossdock.dag.dag",
    "BaseOperator": "crossdock.dag.baseoperator",
    "BashOperator": "crossdock.dag.bash_operator",
    "PythonOperator": "crossdock.dag.python_operator",
    "task": "crossdock.dag.decorators",
    "TaskFailure": "crossdock.dag.exceptions",
    "DagDefinitionError": "crossdock.dag.exceptions",
    "TriggerRule": "crossdock.dag.trigger_rule",
    "Variable": "crossdock.secrets.variable",
    "Connection": "crossdock.secrets.connection",
    "BaseHook": "crossdock.hooks.base",
    "Param": "crossdock.dag.param",
    "EmptyOperator": "crossdock.dag.empty_operator",
    "TaskGroup": "crossdock.dag.task_group",
    "task_group": "crossdock.dag.task_group",
    "Label": "crossdock.dag.edge_modifier",
    "chain": "crossdock.dag.relations",
    "chain_linear": "crossdock.dag.relations",
    "cross_downstream": "crossdock.dag.relations",
    "BaseBranchOperator": "crossdock.dag.branch_operators",
    "BranchPythonOperator": "crossdock.dag.branch_operators",
    "ShortCircuitOperator": "crossdock.dag.branch_operators",
    "AirflowException": "crossdock.dag.exceptions",
    "AirflowSkipException": "crossdock.dag.exceptions",
    "AirflowFailException": "crossdock.dag.exceptions",
    "AirflowSensorTimeout": "crossdock.dag.exceptions",
    "BaseSensorOperator": "crossdock.dag.sensors",
    "PythonSensor": "crossdock.dag.sensors",
    "BashSensor": "crossdock.dag.sensors",
    "DateTimeSensor": "crossdock.dag.sensors",
    "TimeDeltaSensor": "crossdock.dag.sensors",
    "FileSensor": "crossdock.dag.sensors",
    "ExternalTaskSensor": "crossdock.dag.sensors",
    "CeleryQueueSensor": "crossdock.providers.celery.sensors.celery_queue",
    "PokeReturnValue": "crossdock.dag.sensors",
}

__all__ = ["__version__", *_LAZY]

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
