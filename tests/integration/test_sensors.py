"""Sensors through the scheduler: poke mode waits in its try, reschedule mode gives its slot
back between pokes (state up_for_reschedule, retries unspent), timeouts fail without retries
or skip with soft_fail, and a sensor that raises fails like any task."""

from __future__ import annotations

import textwrap

import pytest

from crossdock.state import TaskInstanceState as S

from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files
from process_helpers import killed_when_done

DAG_FILE = '''
import os
from datetime import datetime, timedelta, timezone
from crossdock import DAG, BashSensor, DateTimeSensor, FileSensor, PokeReturnValue, PythonOperator, PythonSensor

MARKER = {marker!r}
COUNTS = {counts!r}

def count(name):
    with open(COUNTS, "a") as handle:
        handle.write(name + "\\n")

def appears_on_third_poke():
    count("resched")
    pokes = open(COUNTS).read().split().count("resched")
    return PokeReturnValue(is_done=pokes >= 3, xcom_value={{"pokes": pokes}})

def make_marker():
    open(MARKER, "w").write("here")

def boom():
    raise ValueError("the sensor's check broke")

with DAG("sensing", schedule=None) as dag:
    resched = PythonSensor(task_id="resched", python_callable=appears_on_third_poke, mode="reschedule",
                           poke_interval=0.2, timeout=60, retries=0)
    after = PythonOperator(task_id="after", python_callable=lambda ti: print("got", ti.xcom_pull(task_ids="resched")))
    resched >> after
    maker = PythonOperator(task_id="maker", python_callable=make_marker)
    maker >> FileSensor(task_id="file", filepath=MARKER, poke_interval=0.1, timeout=30)
    BashSensor(task_id="bash", bash_command="test -f " + MARKER, poke_interval=0.1, timeout=30)
    DateTimeSensor(task_id="past", target_time=datetime(2000, 1, 1, tzinfo=timezone.utc), poke_interval=0.1)
    PythonSensor(task_id="never", python_callable=lambda: False, poke_interval=0.1, timeout=0.3, retries=2)
    PythonSensor(task_id="never_soft", python_callable=lambda: False, poke_interval=0.1, timeout=0.3,
                 soft_fail=True, mode="reschedule")
    PythonSensor(task_id="broken", python_callable=boom, poke_interval=0.1)
'''


@pytest.fixture
def sensing(crossdock_home, monkeypatch):
    folder = use_dag_files(crossdock_home, monkeypatch, SCHEDULER__MAX_LOOP_SLEEP="0.05")
    counts = crossdock_home / "counts.txt"
    (folder / "sensing.py").write_text(textwrap.dedent(DAG_FILE.format(
        marker=str(crossdock_home / "marker"), counts=str(counts))))
    return folder, counts


def check_sensing(sensing, executor):
    from crossdock.runner.task_log import task_log_path_for_key

    folder, counts = sensing
    parse_and_trigger(folder, "sensing")
    transitions: list = []
    run_scheduler(executor, transitions=transitions)
    state, tis = run_states("sensing")
    assert {task_id: ti.state for task_id, ti in tis.items()} == {
        "resched": S.SUCCESS, "after": S.SUCCESS, "maker": S.SUCCESS, "file": S.SUCCESS, "bash": S.SUCCESS,
        "past": S.SUCCESS, "never": S.FAILED, "never_soft": S.SKIPPED, "broken": S.FAILED}
    assert state == "failed"
    # three pokes, three tries, each ended up_for_reschedule but the last; no retry was spent on them
    assert counts.read_text().split().count("resched") == 3
    rescheduled = [t for t in transitions if t[0] == "resched" and t[3] == S.UP_FOR_RESCHEDULE]
    assert len(rescheduled) == 2 and tis["resched"].try_number == 3
    assert "got {'pokes': 3}" in task_log_path_for_key(tis["after"].key).read_text()
    # a timeout fails without the task's two retries; soft_fail skips
    assert tis["never"].try_number == 1 and "timed out" in tis["never"].failure_reason
    assert "timed out" in tis["never_soft"].failure_reason
    assert "ValueError: the sensor's check broke" in tis["broken"].failure_reason


def test_sensors_poke_reschedule_time_out_and_fail_as_airflows_do(sensing):
    from crossdock.executors.local_executor import LocalExecutor

    check_sensing(sensing, LocalExecutor(parallelism=4))


def test_a_rescheduled_sensor_frees_its_celery_slot_between_pokes(sensing):
    """Two worker slots: a sensor in reschedule mode holds one only while it pokes."""
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.executors.celery_worker import start_embedded_workers

    with killed_when_done(start_embedded_workers(queues=["default"], concurrency=2)):
        check_sensing(sensing, CeleryExecutor())


def test_external_task_sensor_waits_for_another_dags_task_and_fails_on_its_failure(crossdock_home, monkeypatch):
    from datetime import datetime, timezone

    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.database import create_session
    from crossdock.executors.local_executor import LocalExecutor
    from crossdock.scheduler.dag_runs import create_dag_run

    folder = use_dag_files(crossdock_home, monkeypatch)
    (folder / "external.py").write_text(textwrap.dedent('''
        import time
        from crossdock import DAG, ExternalTaskSensor, PythonOperator

        def fail():
            raise ValueError("upstream broke")

        with DAG("producer", schedule=None) as producer:
            PythonOperator(task_id="produce", python_callable=lambda: time.sleep(1))
            PythonOperator(task_id="broken", python_callable=fail)

        with DAG("watcher", schedule=None) as watcher:
            ExternalTaskSensor(task_id="wait", external_dag_id="producer", external_task_id="produce",
                               poke_interval=0.2, timeout=30)
            ExternalTaskSensor(task_id="wait_broken", external_dag_id="producer", external_task_id="broken",
                               failed_states=["failed"], poke_interval=0.2, timeout=30, retries=2)
            ExternalTaskSensor(task_id="wait_run", external_dag_id="producer", poke_interval=0.2, timeout=1,
                               allowed_states=["success"], soft_fail=True)
    '''))
    when = datetime(2024, 6, 1, tzinfo=timezone.utc)
    with create_session() as session:
        sync_parse_result_to_db(parse_dag_folder(str(folder)), session)
    with create_session() as session:
        create_dag_run(session, dag_id="producer", run_id="r1", logical_date=when)
        create_dag_run(session, dag_id="watcher", run_id="r1", logical_date=when)
    run_scheduler(LocalExecutor(parallelism=4))
    _, tis = run_states("watcher")
    assert tis["wait"].state == S.SUCCESS and tis["wait"].try_number > 1  # it waited, rescheduled
    assert tis["wait_broken"].state == S.FAILED and tis["wait_broken"].try_number >= 1
    assert "producer.broken is failed" in tis["wait_broken"].failure_reason
    assert tis["wait_run"].state == S.SKIPPED  # the producer run failed (broken), soft_fail skips on timeout
