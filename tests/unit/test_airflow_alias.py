"""``[core] airflow_import_alias``: Airflow 2.x DAG files parse unchanged, onto crossdock's objects.

Files are parsed through the real parse path (the fork server's children, or
``parse_payload`` in this process where the test changes the alias table); the real-Airflow
refusal runs in a subprocess whose ``sys.path`` holds a stand-in ``airflow`` package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType

import pytest

import crossdock
from crossdock.configuration import conf
from crossdock.dag import airflow_alias
from crossdock.dag.loader import find_dag_file_paths, load_dags_from_file
from crossdock.dag.processor import child_environment, parse_dag_folder, parse_payload

AIRFLOW_DAG = '''
from datetime import datetime

from airflow import DAG
from airflow.decorators import task
from airflow.models import Variable
from airflow.operators.bash import BashOperator
from airflow.utils.trigger_rule import TriggerRule

with DAG(dag_id="unchanged", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    @task
    def extract():
        return Variable.get("source", default_var="none")

    done = BashOperator(task_id="done", bash_command="echo done", trigger_rule=TriggerRule.ALL_DONE)
    extract() >> done
'''


@pytest.fixture(autouse=True)
def no_finder_left_behind():
    """Each test starts and ends without the alias in this process."""
    airflow_alias.uninstall()
    yield
    airflow_alias.uninstall()
    assert not airflow_alias.installed() and "airflow" not in sys.modules


@pytest.fixture
def alias_on(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CORE__AIRFLOW_IMPORT_ALIAS", "True")
    conf.reload()


def write(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def first_line(error: str | None) -> str | None:
    return error.splitlines()[0] if error else error


# -- an unchanged file ---------------------------------------------------------------
def test_an_unchanged_airflow_dag_file_parses_through_the_dag_folder_scan(tmp_path, alias_on):
    path = write(tmp_path / "dags", "airflow_dag.py", AIRFLOW_DAG)

    result = parse_dag_folder(tmp_path / "dags", include_examples=False)

    assert result.import_errors == {} and result.files == [str(path)]
    [dag] = result.dags
    assert dag["dag_id"] == "unchanged"
    assert sorted(dag["tasks"]) == ["done", "extract"]
    assert dag["tasks"]["done"]["trigger_rule"] == "all_done"
    assert not airflow_alias.installed()  # the scan ran here; the import happened in a child


def test_the_objects_a_file_gets_are_crossdocks_own(tmp_path, alias_on):
    dags = load_dags_from_file(write(tmp_path, "airflow_dag.py", AIRFLOW_DAG))

    dag = dags["unchanged"]
    assert isinstance(dag, crossdock.DAG)
    assert isinstance(dag.get_task("done"), crossdock.BashOperator)
    assert isinstance(dag.get_task("extract"), crossdock.PythonOperator)
    import airflow
    from airflow.models import Param, Variable, XComArg
    from airflow.configuration import conf as airflow_conf
    from airflow.hooks.base import BaseHook
    from crossdock.dag.xcom_arg import XComArg as CrossdockXComArg

    assert (airflow.DAG, airflow.models.DAG, airflow.models.dag.DAG) == (crossdock.DAG,) * 3
    assert (Variable, Param, XComArg, BaseHook) == (crossdock.Variable, crossdock.Param, CrossdockXComArg,
                                                    crossdock.BaseHook)
    assert airflow_conf is conf


def test_star_import_gives_the_names_crossdock_provides(tmp_path, alias_on, monkeypatch):
    monkeypatch.setitem(airflow_alias._MODULES, "airflow.operators.python", {
        "PythonOperator": "crossdock:PythonOperator", "Missing": "crossdock:NoSuchOperator"})
    airflow_alias.ensure_configured()
    namespace: dict = {}
    exec("from airflow.operators.python import *", namespace)
    assert namespace["PythonOperator"] is crossdock.PythonOperator and "Missing" not in namespace


def test_days_ago_is_midnight_utc_n_days_back(alias_on):
    airflow_alias.ensure_configured()
    from airflow.utils.dates import days_ago

    expected = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    assert days_ago(2) == expected and days_ago(2, hour=6) == expected.replace(hour=6)


# -- what crossdock lacks -------------------------------------------------------------
@pytest.mark.parametrize("line, error", [
    ("from airflow.operators.python import PythonVirtualenvOperator",
     "ImportError: crossdock does not provide airflow.operators.python.PythonVirtualenvOperator"),
    ("from airflow.operators import nothing_here",
     "ImportError: crossdock does not provide airflow.operators.nothing_here"),
    ("import airflow.contrib.operators.ssh_operator",
     "ModuleNotFoundError: crossdock does not provide airflow.contrib"),
    ("from airflow.providers.amazon.aws.operators.s3 import S3CreateBucketOperator",
     "ModuleNotFoundError: crossdock does not provide airflow.providers.amazon"),
])
def test_a_name_crossdock_lacks_is_the_files_import_error(tmp_path, alias_on, line, error):
    path = write(tmp_path / "dags", "uses_more.py", f"""\
        from airflow import DAG
        {line}
        dag = DAG("uses_more")
    """)

    result = parse_dag_folder(tmp_path / "dags", include_examples=False)

    assert result.dags == []
    assert first_line(result.import_errors[str(path)]) == error
    assert "line 2" in result.import_errors[str(path)]


@pytest.mark.parametrize("target", [
    "crossdock.dag.operator_not_written_yet:EmptyOperator",  # the module does not exist
    "crossdock:EmptyOperatorNotExported",                    # crossdock does not export the name
    "crossdock.dag:xcom_arg",                                # a module stands where a class should
])
def test_a_target_that_does_not_exist_fails_cleanly_instead_of_half_working(tmp_path, alias_on, monkeypatch,
                                                                             target):
    monkeypatch.setitem(airflow_alias._MODULES, "airflow.operators.empty", {"EmptyOperator": target})
    path = write(tmp_path, "empty.py", """\
        from airflow import DAG
        from airflow.operators.empty import EmptyOperator
        dag = DAG("empty")
    """)

    payload = parse_payload(str(path))

    assert payload["dags"] == []
    assert first_line(payload["error"]) == "ImportError: crossdock does not provide airflow.operators.empty.EmptyOperator"


def test_a_missing_third_party_library_behind_a_target_is_named_not_hidden(tmp_path, alias_on, monkeypatch):
    write(tmp_path / "lib", "alias_target_probe.py", "import library_nobody_installed\nThing = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.setitem(airflow_alias._MODULES, "airflow.sensors.base",
                        {"BaseSensorOperator": "alias_target_probe:Thing"})
    path = write(tmp_path, "sensing.py", "from airflow.sensors.base import BaseSensorOperator\n")

    error = parse_payload(str(path))["error"]

    assert first_line(error) == "ModuleNotFoundError: No module named 'library_nobody_installed'"


def test_every_table_entry_resolves_to_an_object_or_fails_cleanly():
    for module, names in airflow_alias.ALIASES.items():
        for name, target in names.items():
            airflow_name = f"{module}.{name}"
            try:
                value = airflow_alias.resolve(target, airflow_name)
            except ImportError as exc:
                assert str(exc) == f"crossdock does not provide {airflow_name}", (airflow_name, exc)
                continue
            assert not isinstance(value, ModuleType) or callable(value), airflow_name


def test_the_names_crossdock_has_today_map_to_the_same_objects():
    from crossdock.dag.xcom_arg import XComArg

    expected = {
        "airflow.DAG": crossdock.DAG, "airflow.models.BaseOperator": crossdock.BaseOperator,
        "airflow.models.baseoperator.BaseOperator": crossdock.BaseOperator,
        "airflow.operators.bash.BashOperator": crossdock.BashOperator,
        "airflow.operators.python.PythonOperator": crossdock.PythonOperator,
        "airflow.decorators.task": crossdock.task, "airflow.utils.trigger_rule.TriggerRule": crossdock.TriggerRule,
        "airflow.models.param.Param": crossdock.Param, "airflow.models.Variable": crossdock.Variable,
        "airflow.models.Connection": crossdock.Connection, "airflow.hooks.base.BaseHook": crossdock.BaseHook,
        "airflow.models.xcom_arg.XComArg": XComArg, "airflow.configuration.conf": conf,
    }
    for airflow_name, value in expected.items():
        module, name = airflow_name.rsplit(".", 1)
        assert airflow_alias.resolve(airflow_alias.ALIASES[module][name], airflow_name) is value, airflow_name


# -- off by default -------------------------------------------------------------------
def test_off_by_default_an_airflow_import_fails_as_usual(tmp_path):
    assert conf.getboolean("core", "airflow_import_alias") is False
    path = write(tmp_path, "airflow_dag.py", AIRFLOW_DAG)

    error = parse_payload(str(path))["error"]

    assert first_line(error) == "ModuleNotFoundError: No module named 'airflow'"
    assert not airflow_alias.installed()


def test_turning_the_option_off_removes_the_finder_and_its_modules(tmp_path, alias_on, monkeypatch):
    path = write(tmp_path, "airflow_dag.py", AIRFLOW_DAG)
    dag = load_dags_from_file(path)["unchanged"]
    assert airflow_alias.installed() and "airflow.operators.bash" in sys.modules

    monkeypatch.setenv("CROSSDOCK__CORE__AIRFLOW_IMPORT_ALIAS", "False")
    conf.reload()

    assert first_line(parse_payload(str(path))["error"]) == "ModuleNotFoundError: No module named 'airflow'"
    assert not airflow_alias.installed() and "airflow" not in sys.modules
    assert dag.get_task("done").bash_command == "echo done"  # what was loaded keeps working


# -- a real Airflow beside crossdock -----------------------------------------------------
REFUSAL_PROBE = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
from crossdock.dag import airflow_alias
from crossdock.dag.loader import find_dag_file_paths
from crossdock.dag.processor import parse_payload
folder = sys.argv[1]
files = find_dag_file_paths(folder)
payloads = [parse_payload(path) for path in files for _ in range(2)]
print(json.dumps({"files": files, "installed": airflow_alias.installed(),
                  "dags": [d["dag_id"] for p in payloads for d in p["dags"]],
                  "errors": [p["error"] for p in payloads]}))
"""


def run_probe(tmp_path: Path, *, python_path: list[Path], cwd: Path) -> tuple[dict, str]:
    env = child_environment()
    env["CROSSDOCK__CORE__AIRFLOW_IMPORT_ALIAS"] = "True"
    env["PYTHONPATH"] = os.pathsep.join([*map(str, python_path), env["PYTHONPATH"]])
    probe = subprocess.run([sys.executable, "-c", REFUSAL_PROBE, str(tmp_path / "dags")], env=env, cwd=cwd,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout), probe.stderr


def test_a_real_airflow_is_not_shadowed_and_the_log_says_so_once(tmp_path):
    real = tmp_path / "site" / "airflow"
    write(real, "__init__.py", "WHICH = 'real'\n")
    write(tmp_path / "dags", "mixed.py", """\
        import airflow
        from crossdock import DAG
        dag = DAG(f"got_{airflow.WHICH}")
    """)

    result, stderr = run_probe(tmp_path, python_path=[tmp_path / "site"], cwd=tmp_path)

    assert result["dags"] == ["got_real", "got_real"] and result["installed"] is False
    message = (f"[core] airflow_import_alias is on but a real Airflow is installed at {real}; "
               f"crossdock does not shadow it")
    assert stderr.count(message) == 1, stderr


def test_a_real_airflow_that_appears_after_the_alias_is_installed_still_wins(tmp_path, alias_on, monkeypatch):
    monkeypatch.setattr(airflow_alias, "_refusal_reported", False)
    assert airflow_alias.ensure_configured()
    write(tmp_path / "site" / "airflow", "__init__.py", "WHICH = 'real'\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        import airflow

        assert airflow.WHICH == "real"
    finally:
        sys.modules.pop("airflow", None)


def test_a_bare_airflow_folder_in_the_working_directory_is_not_a_real_airflow(tmp_path):
    """``~/airflow`` is Airflow's home folder: running from ``~`` must not disable the alias."""
    (tmp_path / "airflow" / "dags").mkdir(parents=True)
    write(tmp_path / "dags", "plain.py", AIRFLOW_DAG)

    result, stderr = run_probe(tmp_path, python_path=[tmp_path], cwd=tmp_path)

    assert result["errors"] == [None, None] and result["dags"] == ["unchanged", "unchanged"]
    assert result["installed"] is True and "real Airflow" not in stderr


# -- the DAG-file scan ----------------------------------------------------------------------
def test_the_scan_takes_files_naming_airflow_and_dag_only_with_the_alias_on(tmp_path, monkeypatch):
    folder = tmp_path / "dags"
    airflow_file = write(folder, "a_airflow.py", "from airflow import DAG\n")
    crossdock_file = write(folder, "b_crossdock.py", "from crossdock import DAG\n")
    write(folder, "c_helper.py", "import airflow  # a helper, defines nothing\n")

    assert find_dag_file_paths(folder) == [str(crossdock_file)]
    monkeypatch.setenv("CROSSDOCK__CORE__AIRFLOW_IMPORT_ALIAS", "True")
    conf.reload()
    assert find_dag_file_paths(folder) == [str(airflow_file), str(crossdock_file)]
    assert find_dag_file_paths(folder, safe_mode=False) == sorted(str(p) for p in folder.iterdir())
    assert not airflow_alias.installed()  # scanning imports nothing
