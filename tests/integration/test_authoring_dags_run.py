"""An Airflow-idiom DAG file using ``@dag``, ``@task_group``, ``TaskGroup``, ``EmptyOperator``,
``Label``, ``chain`` and ``cross_downstream``, parsed and run by the scheduler on the
LocalExecutor: every task's final state, the values that crossed a group, and a run's
conf reaching a ``@dag`` function's parameter inside a try.
"""

from __future__ import annotations

import textwrap

import pytest

from crossdock.database import create_session
from crossdock.state import TaskInstanceState as S

from kube_executor_support import configure, run_scheduler, run_states

DAG_FILE = '''
from datetime import datetime

from crossdock import (BashOperator, EmptyOperator, Label, TaskGroup, chain, cross_downstream, dag, task,
                       task_group)


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["authoring"],
     default_args={"retries": 0}, description="every authoring name at once")
def authoring(greeting="hello"):
    """Extract, summarize in a group, check in nested groups, then fan out and in."""
    start = EmptyOperator(task_id="start")

    @task
    def extract():
        return [1, 2, 3]

    @task_group(tooltip="sums the values")
    def summarize(values):
        @task
        def total(numbers):
            return sum(numbers)

        @task
        def report(value, word):
            print(f"{word}: total {value}")
            return value

        return report(total(values), greeting)

    with TaskGroup("checks", tooltip="quality checks") as checks:
        with TaskGroup("inner"):
            first = BashOperator(task_id="first", bash_command="echo first")
            second = BashOperator(task_id="second", bash_command="echo second")
        last = EmptyOperator(task_id="last")
        chain(first, second, last)

    left, right = EmptyOperator(task_id="left"), BashOperator(task_id="right", bash_command="echo right")
    done, notify = EmptyOperator(task_id="done"), BashOperator(task_id="notify", bash_command="echo notify")

    values = extract()
    start >> Label("begin") >> values
    summarize(values) >> checks
    checks >> Label("split") >> [left, right]
    cross_downstream([left, right], [done, notify])


authoring()
'''

TASK_IDS = {"start", "extract", "summarize.total", "summarize.report", "checks.inner.first",
            "checks.inner.second", "checks.last", "left", "right", "done", "notify"}


@pytest.fixture
def folder(crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, "default")  # the namespace is unused here
    (folder / "authoring.py").write_text(textwrap.dedent(DAG_FILE))
    return folder


def parse_and_trigger_with_conf(folder, run_conf: dict | None) -> dict:
    """Parse the folder, store its DAGs, trigger run r1 with ``run_conf``; the serialized DAG."""
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.scheduler.dag_runs import create_dag_run

    result = parse_dag_folder(str(folder))
    assert not result.import_errors, result.import_errors
    with create_session() as session:
        sync_parse_result_to_db(result, session)
    with create_session() as session:
        create_dag_run(session, dag_id="authoring", run_id="r1", conf=run_conf)
    return next(data for data in result.dags if data["dag_id"] == "authoring")


def run_on_local_executor(folder, run_conf: dict | None = None):
    from crossdock.executors.local_executor import LocalExecutor

    serialized = parse_and_trigger_with_conf(folder, run_conf)
    run_scheduler(LocalExecutor(parallelism=4))
    return serialized, *run_states("authoring")


def report_line(tis) -> str:
    from crossdock.runner.task_log import task_log_path_for_key

    log = task_log_path_for_key(tis["summarize.report"].key).read_text()
    return next(line for line in log.splitlines() if ": total " in line)


def test_an_airflow_idiom_dag_runs_to_success_with_its_groups_labels_and_params(folder):
    serialized, state, tis = run_on_local_executor(folder)

    failed = {task_id: ti.failure_reason for task_id, ti in tis.items() if ti.state != S.SUCCESS}
    assert state == "success" and not failed, failed
    assert set(tis) == TASK_IDS
    assert report_line(tis).endswith("hello: total 6")  # the @dag parameter's default, in the try

    tasks = serialized["tasks"]
    assert tasks["summarize.total"]["upstream"] == ["extract"]
    assert tasks["checks.inner.first"]["upstream"] == ["summarize.report"]
    assert tasks["checks.last"]["downstream"] == ["left", "right"]
    assert tasks["done"]["upstream"] == tasks["notify"]["upstream"] == ["left", "right"]
    assert tasks["start"]["empty"] is True and "empty" not in tasks["right"]
    assert serialized["edge_info"] == {"start": {"extract": {"label": "begin"}},
                                       "checks.last": {"left": {"label": "split"}, "right": {"label": "split"}}}
    assert sorted(serialized["task_groups"]) == ["checks", "checks.inner", "summarize"]
    assert serialized["task_groups"]["checks.inner"]["parent"] == "checks"
    assert serialized["doc_md"].startswith("Extract, summarize in a group")
    assert serialized["params"]["greeting"]["default"] == "hello"


def test_a_runs_conf_reaches_the_dag_functions_parameter(folder):
    _serialized, state, tis = run_on_local_executor(folder, {"greeting": "bonjour"})
    assert state == "success", {task_id: ti.failure_reason for task_id, ti in tis.items()}
    assert report_line(tis).endswith("bonjour: total 6")
