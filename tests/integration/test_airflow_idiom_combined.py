"""Airflow 2.x idiom, imports unchanged, features combined: a branch inside a task group
feeding a mapped task that runs in pods, a reschedule sensor, an edge label, an
EmptyOperator and a join whose trigger rule sees a skipped branch.

The same file runs on the LocalExecutor and on the hybrid (embedded Celery workers for
the default queue, the local pod runtime for the ``kubernetes`` queue). Every task's final
state, the values passed and the executor of each try are checked, and each try writes a
ledger line, so "every element ran once" is the tasks' own word.
"""

from __future__ import annotations

import textwrap
from collections import Counter

from sqlalchemy import select

from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.models import TaskInstance, XCom
from kube_executor_support import parse_and_trigger, run_scheduler
from test_airflow_alias_runs import folder  # noqa: F401 - the fixture: a DAGs folder with the alias on

COMBINED_DAG = '''
import os
from datetime import datetime

from airflow import DAG
from airflow.decorators import task, task_group
from airflow.operators.bash import BashOperator
from airflow.operators.empty import EmptyOperator
from airflow.sensors.python import PythonSensor
from airflow.utils.edgemodifier import Label
from airflow.utils.trigger_rule import TriggerRule

LEDGER = {ledger!r}
MARKER = {marker!r}


def note(*words):
    with open(LEDGER, "a") as ledger:
        ledger.write(" ".join(str(word) for word in words) + "\\n")


with DAG("combined", start_date=datetime(2024, 1, 1), schedule=None, catchup=False,
         default_args={{"owner": "data", "retries": 0}}):
    start = EmptyOperator(task_id="start")

    @task
    def sizes() -> list:
        note("sizes")
        return [1, 2, 3]

    @task_group(group_id="choose")
    def choose(values):
        @task.branch
        def pick(values):
            note("pick", len(values))
            return "choose.many" if len(values) > 2 else "choose.few"

        @task
        def many(values):
            note("many")
            return [value * 10 for value in values]

        @task
        def few(values):
            note("few")
            return []

        chosen = many(values)
        pick(values) >> [chosen, few(values)]
        return chosen

    make_marker = BashOperator(task_id="make_marker", bash_command=f"sleep 1 && touch {{MARKER}}")
    wait = PythonSensor(task_id="wait_for_marker", mode="reschedule", poke_interval=0.2, timeout=60,
                        python_callable=lambda: os.path.exists(MARKER))

    @task(queue="kubernetes")
    def scale(x):
        note("scale", x)
        return x + 1

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def report(values):
        note("report", sorted(values))
        return sum(values)

    scaled = scale.expand(x=choose(sizes()))
    start >> Label("begin") >> [make_marker, wait]
    wait >> scaled
    report(scaled)
'''

EXPECTED_STATES = {
    ("start", -1): "success", ("sizes", -1): "success", ("choose.pick", -1): "success",
    ("choose.many", -1): "success", ("choose.few", -1): "skipped", ("make_marker", -1): "success",
    ("wait_for_marker", -1): "success", ("scale", 0): "success", ("scale", 1): "success",
    ("scale", 2): "success", ("report", -1): "success",
}


def write_combined_dag(folder, home):
    (folder / "combined.py").write_text(textwrap.dedent(COMBINED_DAG.format(
        ledger=str(home / "ledger.txt"), marker=str(home / "marker"))))


def run_and_read(folder, executor, transitions):
    write_combined_dag(folder, folder.parent)
    parse_and_trigger(folder, "combined")
    run_scheduler(executor, transitions=transitions)
    with create_session() as session:
        tis = {(ti.task_id, ti.map_index): (ti.state, ti.executor, ti.failure_reason)
               for ti in session.scalars(select(TaskInstance).where(TaskInstance.dag_id == "combined"))}
        values = {(row.task_id, row.map_index): row.value for row in session.execute(
            select(XCom.task_id, XCom.map_index, XCom.value).where(XCom.dag_id == "combined",
                                                                   XCom.key == "return_value"))}
    return tis, values


def assert_the_run_went_as_written(crossdock_home, tis, values, transitions):
    from crossdock.dag.xcom_values import deserialize_value

    assert {key: state for key, (state, _, _) in tis.items()} == EXPECTED_STATES, tis
    decoded = {key: deserialize_value(value) for key, value in values.items()}
    assert decoded[("choose.many", -1)] == [10, 20, 30]
    assert [decoded[("scale", index)] for index in range(3)] == [11, 21, 31]
    assert decoded[("report", -1)] == 63
    ledger = Counter((crossdock_home / "ledger.txt").read_text().splitlines())
    assert ledger == Counter({"sizes": 1, "pick 3": 1, "many": 1, "scale 10": 1, "scale 20": 1, "scale 30": 1,
                              "report [11, 21, 31]": 1})
    assert any(t[0] == "wait_for_marker" and t[3] == "up_for_reschedule" for t in transitions), \
        "the sensor never had to wait for the marker"


def test_the_combined_dag_runs_on_the_local_executor(folder, crossdock_home):
    from crossdock.executors.local_executor import LocalExecutor

    transitions: list = []
    tis, values = run_and_read(folder, LocalExecutor(parallelism=4), transitions)
    assert_the_run_went_as_written(crossdock_home, tis, values, transitions)


def test_the_combined_dag_runs_on_the_hybrid_with_the_mapped_step_in_pods(folder, crossdock_home, monkeypatch):
    from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor
    from crossdock.executors.celery_worker import start_embedded_workers
    from crossdock.kubernetes.local_runtime.standalone import (
        CONFIG_FILE_ENV, SHARE_ENV, start_runtime_unless_configured,
    )

    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv(CONFIG_FILE_ENV, raising=False)
    monkeypatch.delenv(SHARE_ENV, raising=False)
    monkeypatch.setenv("CROSSDOCK__CORE__EXECUTOR", "CeleryKubernetesExecutor")
    conf.reload()
    runtime = start_runtime_unless_configured()
    transitions: list = []
    try:
        with start_embedded_workers(queues=["default"], concurrency=2):
            tis, values = run_and_read(folder, CeleryKubernetesExecutor(), transitions)
    finally:
        runtime.stop()
    assert_the_run_went_as_written(crossdock_home, tis, values, transitions)
    executors = {key: executor for key, (state, executor, _) in tis.items() if executor}
    assert {executors[("scale", index)] for index in range(3)} == {"KubernetesExecutor"}
    assert executors[("wait_for_marker", -1)] == "CeleryExecutor"
    assert executors[("choose.pick", -1)] == "CeleryExecutor"
