"""Values between tasks through the scheduler, on each executor, with real workers and pods.

The issue's TaskFlow example (``extract`` → ``transform`` with multiple outputs → ``load``,
and a templated ``report`` that pulls) plus explicit pushes of non-JSON types and a pull
of several tasks at once. Every value crosses the executor's own channel twice (back
with its try's result, out with the next try's command); the workers and pods have no
database. What was stored is read back from the ``xcom`` table, what the tasks saw from
their logs.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.state import TaskInstanceState as S

from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files
from process_helpers import killed_when_done
from service_gates import REDIS_URL, require_service

DAG_BODY = '''
from datetime import datetime, timezone
from crossdock import DAG, BashOperator, PythonOperator, task

WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)

with DAG("values", schedule_interval=None, params={{"who": "world"}}) as dag:
    @task
    def extract() -> dict:
        return {{"a": 1, "b": 2}}

    @task(multiple_outputs=True)
    def transform(d: dict) -> dict:
        return {{"total": sum(d.values()), "n": len(d)}}

    @task(queue="{load_queue}")
    def load(total: int, n: int):
        print(f"mean: {{total / n}}")
        return total / n

    data = extract()
    totals = transform(data)
    loaded = load(totals["total"], totals["n"])
    report = BashOperator(task_id="report", bash_command=
        "echo {{{{ ds }}}} {{{{ ti.xcom_pull(task_ids='extract')['a'] }}}} {{{{ params.who }}}}")
    data >> report

    def pusher(ti):
        ti.xcom_push("when", WHEN)
        ti.xcom_push("pair", (1, 2))

    def puller(ti):
        assert ti.xcom_pull(task_ids="push", key="when") == WHEN
        assert ti.xcom_pull(task_ids="push", key="pair") == (1, 2)
        assert ti.xcom_pull(task_ids=["load", "extract"]) == [1.5, {{"a": 1, "b": 2}}]
        assert ti.xcom_pull(task_ids="missing_key_task", default="none") == "none"
        print("report said:", ti.xcom_pull(task_ids="report"))

    push = PythonOperator(task_id="push", python_callable=pusher)
    missing = PythonOperator(task_id="missing_key_task", python_callable=lambda: None)
    pull = PythonOperator(task_id="pull", python_callable=puller)
    [push, loaded, report, missing] >> pull
'''


def stored_values(dag_id: str = "values", run_id: str = "r1") -> dict[tuple[str, str], object]:
    from crossdock.dag.xcom_values import deserialize_value
    from crossdock.models import XCom

    with create_session() as session:
        rows = session.execute(select(XCom.task_id, XCom.key, XCom.value).where(
            XCom.dag_id == dag_id, XCom.run_id == run_id)).all()
    return {(row.task_id, row.key): deserialize_value(row.value) for row in rows}


def run_values_dag(executor, folder, *, load_queue: str = "default"):
    (folder / "values.py").write_text(textwrap.dedent(DAG_BODY.format(load_queue=load_queue)))
    parse_and_trigger(folder, "values")
    run_scheduler(executor)
    return run_states("values")


def assert_values_went_through(state, tis):
    from crossdock.models import DagRun
    from crossdock.runner.task_log import task_log_path_for_key

    failed = {t: ti.failure_reason for t, ti in tis.items() if ti.state != S.SUCCESS}
    assert state == "success" and not failed, failed
    with create_session() as session:
        logical_date = session.scalar(select(DagRun.logical_date).where(DagRun.run_id == "r1"))
    ds = logical_date.date().isoformat()
    values = stored_values()
    assert values[("extract", "return_value")] == {"a": 1, "b": 2}
    assert values[("extract", "a")] == 1  # `-> dict` means multiple_outputs, as in Airflow
    assert values[("transform", "total")] == 3 and values[("transform", "n")] == 2
    assert values[("load", "return_value")] == 1.5
    assert values[("report", "return_value")] == f"{ds} 1 world"  # bash's last line
    assert values[("push", "when")] == datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    assert values[("push", "pair")] == (1, 2)
    assert ("missing_key_task", "return_value") not in values  # None is not pushed
    assert "mean: 1.5" in task_log_path_for_key(tis["load"].key).read_text()
    assert f"report said: {ds} 1 world" in task_log_path_for_key(tis["pull"].key).read_text()


@pytest.fixture
def folder(crossdock_home, monkeypatch):
    return use_dag_files(crossdock_home, monkeypatch, SCHEDULER__MAX_LOOP_SLEEP="0.02")


def test_values_pass_between_tasks_on_the_local_executor(folder):
    from crossdock.executors.local_executor import LocalExecutor

    assert_values_went_through(*run_values_dag(LocalExecutor(parallelism=4), folder))


def test_values_pass_between_tasks_on_embedded_celery(folder):
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.executors.celery_worker import start_embedded_workers

    with killed_when_done(start_embedded_workers(queues=["default"], concurrency=2)):
        assert_values_went_through(*run_values_dag(CeleryExecutor(), folder))


@pytest.mark.redis
def test_values_pass_between_tasks_on_celery_with_redis(folder, monkeypatch):
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.executors.celery_worker import start_embedded_workers

    require_service("redis")
    queue = f"xcom-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CROSSDOCK__CELERY__BROKER_URL", f"{REDIS_URL}/4")
    monkeypatch.setenv("CROSSDOCK__CELERY__RESULT_BACKEND", f"{REDIS_URL}/5")
    monkeypatch.setenv("CROSSDOCK__CORE__DEFAULT_QUEUE", queue)
    conf.reload()
    with killed_when_done(start_embedded_workers(queues=[queue], concurrency=2)):
        assert_values_went_through(*run_values_dag(CeleryExecutor(), folder, load_queue=queue))


def test_values_cross_into_a_pod_and_back_on_the_hybrid_executor(folder, monkeypatch):
    """``load`` runs in a pod of the local pod runtime, the rest on embedded Celery workers."""
    from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor
    from crossdock.executors.celery_worker import start_embedded_workers
    from crossdock.kubernetes.local_runtime.standalone import (
        CONFIG_FILE_ENV, SHARE_ENV, start_runtime_unless_configured,
    )

    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv(CONFIG_FILE_ENV, raising=False)
    monkeypatch.delenv(SHARE_ENV, raising=False)
    conf.reload()
    runtime = start_runtime_unless_configured()
    try:
        with killed_when_done(start_embedded_workers(queues=["default"], concurrency=2)):
            state, tis = run_values_dag(CeleryKubernetesExecutor(), folder, load_queue="kubernetes")
        assert_values_went_through(state, tis)
        assert tis["load"].executor == "KubernetesExecutor" and tis["extract"].executor == "CeleryExecutor"
    finally:
        runtime.stop()


def test_a_value_that_is_not_serializable_fails_its_try_naming_the_type(folder):
    from crossdock.executors.local_executor import LocalExecutor

    (folder / "bad_values.py").write_text(textwrap.dedent('''
        from crossdock import DAG, task

        with DAG("bad_values", schedule_interval=None) as dag:
            @task
            def make():
                return object()

            @task
            def big():
                return "x" * 100_000

            @task
            def after(value):
                print("must not run", value)

            after(make())
            big()
    '''))
    parse_and_trigger(folder, "bad_values")
    run_scheduler(LocalExecutor(parallelism=2))
    state, tis = run_states("bad_values")
    assert state == "failed"
    assert "XCom 'return_value' of task 'make' is of type builtins.object" in tis["make"].failure_reason
    assert "over the limit of 49,152 ([core] max_xcom_size)" in tis["big"].failure_reason
    assert tis["after"].state == S.UPSTREAM_FAILED
    assert stored_values("bad_values") == {}


def test_tasks_xcom_prints_what_a_task_pushed(folder, capsys):
    from crossdock.cli.main import main
    from crossdock.executors.local_executor import LocalExecutor

    run_values_dag(LocalExecutor(parallelism=4), folder)
    capsys.readouterr()
    assert main(["tasks", "xcom", "values", "transform", "r1", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": 2, "return_value": {"n": 2, "total": 3}, "total": 3}
    assert main(["tasks", "xcom", "values", "push", "r1", "--key", "pair"]) == 0
    assert '{"__crossdock_type__":["tuple",[1,2]]}' in capsys.readouterr().out
    assert main(["tasks", "xcom", "values", "missing_key_task", "r1"]) == 1
    assert "has no XComs" in capsys.readouterr().err


def test_a_failed_trys_pushes_never_reach_the_store_and_its_retry_reports_its_own(folder):
    from crossdock.executors.local_executor import LocalExecutor

    (folder / "retried.py").write_text(textwrap.dedent('''
        from crossdock import DAG, PythonOperator

        def flaky(ti):
            ti.xcom_push("attempt", ti.try_number)
            if ti.try_number == 1:
                raise ValueError("the first try fails")
            return "second"

        def after(ti):
            assert ti.xcom_pull(task_ids="flaky", key="attempt") == 2
            assert ti.xcom_pull(task_ids="flaky") == "second"

        with DAG("retried", schedule_interval=None) as dag:
            PythonOperator(task_id="flaky", python_callable=flaky, retries=1, retry_delay=0) >> \\
                PythonOperator(task_id="after", python_callable=after)
    '''))
    parse_and_trigger(folder, "retried")
    run_scheduler(LocalExecutor(parallelism=2))
    state, tis = run_states("retried")
    assert state == "success" and tis["flaky"].try_number == 2, {t: ti.failure_reason for t, ti in tis.items()}
    assert stored_values("retried") == {("flaky", "attempt"): 2, ("flaky", "return_value"): "second"}


def test_a_restarted_scheduler_hands_over_the_values_stored_before_it_started(folder):
    """A run resumed by a new scheduler: ``transform`` runs again and still gets ``extract``'s value."""
    from sqlalchemy import update

    from crossdock.executors.local_executor import LocalExecutor
    from crossdock.models import DagRun, TaskInstance

    run_values_dag(LocalExecutor(parallelism=4), folder)
    with create_session() as session:  # as if the scheduler had died right after extract succeeded
        session.execute(update(DagRun).where(DagRun.dag_id == "values").values(state="running", end_date=None))
        session.execute(update(TaskInstance).where(TaskInstance.dag_id == "values",
                                                   TaskInstance.task_id != "extract")
                        .values(state=None, end_date=None))
    run_scheduler(LocalExecutor(parallelism=4))
    state, tis = run_states("values")
    assert tis["transform"].try_number == 2  # it really ran again, from the stored value
    assert_values_went_through(state, tis)
