"""An Airflow 2.x DAG file, imports unchanged, runs to success through the scheduler.

``[core] airflow_import_alias`` is on; the file names neither crossdock nor anything
crossdock-specific. It is found by the DAG-folder scan, parsed in the fork server's
children, and each try (a fork of the LocalExecutor's warm process) imports it again
through the alias, reads a Variable and passes values on with TaskFlow and templates.
"""

from __future__ import annotations

import textwrap

import pytest

from crossdock import Variable, database
from crossdock.configuration import conf
from crossdock.dag import airflow_alias
from crossdock.state import TaskInstanceState as S

from kube_executor_support import parse_and_trigger, run_scheduler, run_states
from test_xcom_executors import stored_values

AIRFLOW_DAG = '''
from datetime import datetime

from airflow import DAG
from airflow.decorators import task
from airflow.models import Variable
from airflow.operators.bash import BashOperator
from airflow.utils.trigger_rule import TriggerRule

default_args = {"owner": "data", "retries": 1}

with DAG(
    dag_id="airflow_unchanged",
    default_args=default_args,
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    tags=["example"],
) as dag:

    @task
    def extract() -> dict:
        return {"greeting": Variable.get("greeting"), "times": 3}

    @task
    def transform(data: dict) -> str:
        return " ".join([data["greeting"]] * data["times"])

    report = BashOperator(
        task_id="report",
        bash_command="echo {{ ti.xcom_pull(task_ids='transform') }} / {{ var.value.greeting }}",
        trigger_rule=TriggerRule.ALL_SUCCESS,
    )

    transform(extract()) >> report
'''


@pytest.fixture
def folder(crossdock_home, monkeypatch):
    folder = crossdock_home / "dags"
    folder.mkdir()
    for key, value in {"CORE__DAGS_FOLDER": str(folder), "CORE__AIRFLOW_IMPORT_ALIAS": "True",
                       "SCHEDULER__MAX_LOOP_SLEEP": "0.02", "SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0"}.items():
        monkeypatch.setenv(f"CROSSDOCK__{key}", value)
    conf.reload()
    database.migrate()
    yield folder
    airflow_alias.uninstall()


def test_an_unchanged_airflow_dag_runs_to_success_on_the_local_executor(folder):
    from crossdock.executors.local_executor import LocalExecutor

    Variable.set("greeting", "hello")
    (folder / "airflow_unchanged.py").write_text(textwrap.dedent(AIRFLOW_DAG))

    parse_and_trigger(folder, "airflow_unchanged")
    run_scheduler(LocalExecutor(parallelism=2))
    state, tis = run_states("airflow_unchanged")

    failed = {task_id: ti.failure_reason for task_id, ti in tis.items() if ti.state != S.SUCCESS}
    assert state == "success" and not failed and sorted(tis) == ["extract", "report", "transform"], failed
    values = stored_values("airflow_unchanged")
    assert values[("extract", "return_value")] == {"greeting": "hello", "times": 3}
    assert values[("transform", "return_value")] == "hello hello hello"
    assert values[("report", "return_value")] == "hello hello hello / hello"
    assert not airflow_alias.installed()  # the scheduler's process never imported the file
