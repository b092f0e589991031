"""``[core] airflow_import_alias``: ``airflow.*`` imports in DAG files resolve to crossdock.

An Airflow 2.x DAG file imports ``from airflow import DAG``,
``from airflow.operators.bash import BashOperator`` and so on. With the option on, a
finder on ``sys.meta_path`` answers for the ``airflow`` package with module
objects whose attributes are crossdock's own objects (the same objects, so ``isinstance``
and ``>>`` work), and the file runs unchanged. It is installed by the DAG loader, so only
in the processes that import DAG files (parse children, task tries, warm processes that
fork them, ``crossdock tasks ...``), never in the scheduler, which only reads results.

What maps to what is the declarative table :data:`ALIASES`. Each target is looked up on
first use, so a name whose crossdock counterpart does not exist (yet) fails where it is
imported, with ``ImportError: crossdock does not provide airflow.X.Y``, instead of
handing the DAG file a half-working object; so does every module or name not in the table.

A real Airflow importable in the same environment is never shadowed: the finder is not
installed, DAG files get the real package, and the log says so once per process.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any, Sequence

log = logging.getLogger(__name__)

#: The package the alias answers for.
ROOT = "airflow"
#: With the alias on, a file mentioning both words is a DAG-file candidate too
#: (Airflow's own safe-mode heuristic), beside those naming "dag" and "crossdock".
AIRFLOW_SAFE_MODE_WORDS = (b"dag", b"airflow")


def _public(*names: str) -> dict[str, str]:
    """Names crossdock's package exports under Airflow's spelling: ``{name: "crossdock:name"}``."""
    return {name: f"crossdock:{name}" for name in names}


_XCOM_ARG = {"XComArg": "crossdock.dag.xcom_arg:XComArg"}
_PYTHON_OPERATORS = _public("PythonOperator", "BranchPythonOperator", "ShortCircuitOperator")
_HELPERS = _public("chain", "chain_linear", "cross_downstream")

#: Airflow module → {Airflow name: "crossdock.module:attribute"}. Authoring names point at
#: crossdock's public package (``crossdock:Name``), wherever the class itself lives.
#: Parent packages (``airflow.operators``, ``airflow.providers.celery``...) exist implicitly.
ALIASES: dict[str, dict[str, str]] = {
    "airflow": {**_public("DAG"), **_XCOM_ARG},
    "airflow.models": {**_public("DAG", "BaseOperator", "Param", "Variable", "Connection"), **_XCOM_ARG},
    "airflow.models.dag": _public("DAG"),
    "airflow.models.baseoperator": {**_public("BaseOperator"), **_HELPERS},
    "airflow.models.param": {**_public("Param"), "ParamsDict": "crossdock.dag.param:ParamsDict"},
    "airflow.models.variable": _public("Variable"),
    "airflow.models.connection": _public("Connection"),
    "airflow.models.xcom_arg": _XCOM_ARG,
    "airflow.models.taskinstancekey": {"TaskInstanceKey": "crossdock.models.taskinstancekey:TaskInstanceKey"},
    "airflow.decorators": _public("task", "dag", "task_group"),
    "airflow.operators.bash": _public("BashOperator"),
    "airflow.operators.python": _PYTHON_OPERATORS,
    "airflow.operators.branch": _public("BaseBranchOperator"),
    "airflow.operators.empty": _public("EmptyOperator"),
    # Airflow 2.x still ships the pre-2.0 spellings, and many DAG files use them.
    "airflow.operators.dummy": {"DummyOperator": "crossdock:EmptyOperator", **_public("EmptyOperator")},
    "airflow.operators.bash_operator": _public("BashOperator"),
    "airflow.operators.python_operator": _PYTHON_OPERATORS,
    "airflow.utils.task_group": _public("TaskGroup"),
    "airflow.utils.trigger_rule": _public("TriggerRule"),
    "airflow.utils.edgemodifier": _public("Label"),
    "airflow.utils.helpers": _HELPERS,
    "airflow.utils.dates": {"days_ago": "crossdock.dag.airflow_alias:days_ago"},
    "airflow.exceptions": {
        **_public("AirflowException", "AirflowSkipException", "AirflowFailException", "AirflowSensorTimeout"),
        "AirflowDagCycleException": "crossdock.dag.exceptions:DagCycleError",
        "DuplicateTaskIdFound": "crossdock.dag.exceptions:DuplicateTaskIdError",
        "DagNotFound": "crossdock.dag.exceptions:DagNotFound",
        "TaskNotFound": "crossdock.dag.exceptions:TaskNotFound",
        "ParamValidationError": "crossdock.dag.param:ParamValidationError",
    },
    "airflow.sensors.base": _public("BaseSensorOperator", "PokeReturnValue"),
    "airflow.sensors.python": _public("PythonSensor"),
    "airflow.sensors.bash": _public("BashSensor"),
    "airflow.sensors.time_delta": _public("TimeDeltaSensor"),
    "airflow.sensors.date_time": _public("DateTimeSensor"),
    "airflow.sensors.filesystem": _public("FileSensor"),
    "airflow.sensors.external_task": _public("ExternalTaskSensor"),
    "airflow.hooks.base": _public("BaseHook"),
    "airflow.configuration": {"conf": "crossdock.configuration:conf"},
    "airflow.providers.celery.sensors.celery_queue": {
        "CeleryQueueSensor": "crossdock.providers.celery.sensors.celery_queue:CeleryQueueSensor"},
    "airflow.providers.celery.executors.celery_executor": {
        "CeleryExecutor": "crossdock.executors.celery_executor:CeleryExecutor",
    },
    "airflow.providers.celery.executors.celery_kubernetes_executor": {
        "CeleryKubernetesExecutor": "crossdock.executors.celery_kubernetes_executor:CeleryKubernetesExecutor",
    },
    "airflow.providers.cncf.kubernetes.executors.kubernetes_executor": {
        "KubernetesExecutor": "crossdock.executors.kubernetes_executor:KubernetesExecutor",
    },
    "airflow.providers.cncf.kubernetes.kube_client": {
        "get_kube_client": "crossdock.kubernetes.kube_client:get_kube_client",
    },
    "airflow.executors.base_executor": {"BaseExecutor": "crossdock.executors.base_executor:BaseExecutor"},
}


def _all_modules(table: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The table with every parent package of its modules added (with no names of its own)."""
    modules: dict[str, dict[str, str]] = {}
    for name in table:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            modules.setdefault(".".join(parts[:depth]), {})
    modules.update((name, dict(names)) for name, names in table.items())
    return modules


_MODULES = _all_modules(ALIASES)
#: Modules of the table that others sit under: they get a ``__path__``, like Airflow's.
_PACKAGES = frozenset(name.rsplit(".", 1)[0] for name in _MODULES if "." in name)


def not_provided(airflow_name: str) -> ImportError:
    """The error for an ``airflow`` name crossdock has no counterpart for (yet).

    A plain ImportError, so the DAG file's import error reads
    ``ImportError: crossdock does not provide airflow.X.Y``; ``name`` is the Airflow name.
    """
    return ImportError(f"crossdock does not provide {airflow_name}", name=airflow_name)


def _is_not_provided(exc: ImportError, airflow_name: str) -> bool:
    return exc.name == airflow_name and str(exc).startswith("crossdock does not provide ")


def days_ago(n: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0) -> datetime:
    """Airflow's ``days_ago``: today at ``hour:minute`` UTC (midnight by default), ``n`` days back.

    A start date that moves every day: Airflow deprecates it, but older DAG files use it.
    """
    today = datetime.now(timezone.utc).replace(hour=hour, minute=minute, second=second, microsecond=microsecond)
    return today - timedelta(days=n)


def _is_missing_crossdock_module(exc: ModuleNotFoundError) -> bool:
    name = exc.name or ""
    return name == "crossdock" or name.startswith("crossdock.")


def resolve(target: str, airflow_name: str) -> Any:
    """The object ``"crossdock.module:attribute"`` names; :func:`not_provided` if it does not exist.

    A module standing where a name is expected (``crossdock.dag``, the subpackage, is not
    a ``@dag`` decorator unless it can be called) counts as missing. A missing
    third-party library is not hidden: its own ImportError says which one.
    """
    module_name, _, attribute = target.partition(":")
    try:
        value = getattr(importlib.import_module(module_name), attribute)
    except ModuleNotFoundError as exc:
        if _is_missing_crossdock_module(exc):
            raise not_provided(airflow_name) from None
        raise
    except AttributeError:
        raise not_provided(airflow_name) from None
    if isinstance(value, ModuleType) and not callable(value):
        raise not_provided(airflow_name)
    return value


def _fill(module: ModuleType, names: dict[str, str]) -> None:
    """Give an alias module its lazy attribute lookup (PEP 562 ``__getattr__``/``__dir__``)."""
    namespace = module.__dict__
    module_name = module.__name__
    children = sorted(name[len(module_name) + 1:] for name in _MODULES
                      if name.rsplit(".", 1)[0] == module_name and "." in name)

    def __getattr__(attribute: str) -> Any:
        if attribute == "__all__":
            # ``import *`` gets what crossdock provides, not an error for what it does not.
            provided = []
            for name in names:
                try:
                    __getattr__(name)
                except ImportError as exc:
                    if _is_not_provided(exc, f"{module_name}.{name}"):
                        continue
                    raise
                provided.append(name)
            namespace["__all__"] = provided
            return provided
        if attribute in names:
            value = resolve(names[attribute], f"{module_name}.{attribute}")
            namespace[attribute] = value
            return value
        if attribute in children:
            return importlib.import_module(f"{module_name}.{attribute}")
        if attribute.startswith("_"):
            # Probes for dunders (``__file__``, ``__wrapped__``) must see a plain miss.
            raise AttributeError(f"module {module_name!r} has no attribute {attribute!r}")
        raise not_provided(f"{module_name}.{attribute}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names) | set(children))

    namespace["__getattr__"] = __getattr__
    namespace["__dir__"] = __dir__
    namespace["__doc__"] = (f"crossdock's stand-in for {module_name} ([core] airflow_import_alias): "
                            f"{', '.join(sorted(names)) or 'only submodules'}.")


class AirflowAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds and loads the modules of :data:`ALIASES`; refuses every other ``airflow.*`` name.

    A module not in the table is a ModuleNotFoundError (an ImportError), as for any
    missing module, so ``except ModuleNotFoundError`` in DAG code behaves as with Airflow.
    """

    def __repr__(self) -> str:
        return "crossdock's airflow import alias"

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != ROOT and not fullname.startswith(ROOT + "."):
            return None
        if fullname == ROOT and report_real_airflow() is not None:
            return None  # one appeared on sys.path since the finder was installed
        if fullname not in _MODULES:
            raise ModuleNotFoundError(f"crossdock does not provide {fullname}", name=fullname)
        return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname in _PACKAGES)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        _fill(module, _MODULES[module.__name__])


_FINDER = AirflowAliasFinder()
_refusal_reported = False


def enabled() -> bool:
    """``[core] airflow_import_alias``."""
    from crossdock.configuration import conf

    return conf.getboolean("core", "airflow_import_alias")


def installed() -> bool:
    return _FINDER in sys.meta_path


def real_airflow_location() -> str | None:
    """Where a real ``airflow`` package would be imported from by ``sys.path``, or None."""
    try:
        spec = importlib.machinery.PathFinder.find_spec(ROOT)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None  # nothing, or a bare ``airflow`` folder (an AIRFLOW_HOME in the current directory)
    locations = list(spec.submodule_search_locations or [])
    return locations[0] if locations else spec.origin


def report_real_airflow() -> str | None:
    """The real Airflow's location if there is one, said in the log once per process.

    Called by the DAG-folder scan too: the scheduler's log is where a user looks, and
    what a parse child logs is not shown.
    """
    global _refusal_reported
    location = real_airflow_location()
    if location is not None and not _refusal_reported:
        _refusal_reported = True
        log.warning("[core] airflow_import_alias is on but a real Airflow is installed at %s; "
                    "crossdock does not shadow it: DAG files importing airflow get that Airflow", location)
    return location


def ensure_configured() -> bool:
    """Install the finder if the alias is on (and no real Airflow is there), remove it if off.

    Called before each DAG file is imported; returns whether the alias is in place.
    """
    if not enabled():
        if installed():
            uninstall()
        return False
    if installed():
        return True
    if report_real_airflow() is not None:
        return False
    # First, so that a bare ``airflow`` folder on sys.path (a namespace package to the
    # path finder) cannot take the name; a real Airflow is still left alone (find_spec).
    sys.meta_path.insert(0, _FINDER)
    return True


def uninstall() -> None:
    """Remove the finder and forget the alias modules it made (DAG modules keep their objects)."""
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name, module in list(sys.modules.items()):
        if (name == ROOT or name.startswith(ROOT + ".")) and getattr(module, "__loader__", None) is _FINDER:
            del sys.modules[name]
