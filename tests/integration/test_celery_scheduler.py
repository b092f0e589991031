"""Whole DAG runs through the scheduler on the CeleryExecutor, with real workers.

Redis is the broker and PostgreSQL the result backend; the metadata database is the
per-test SQLite file (the scheduler's own PostgreSQL tests live with the scheduler).
"""

from __future__ import annotations

import textwrap
import time
import uuid

import pytest

from crossdock import database
from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_worker import start_embedded_workers
from service_gates import POSTGRES_URL, REDIS_URL, require_service

MAX_LOOPS = 100_000


def run_dag_on_celery(dags_folder, dag_id: str, *, run_id: str = "r1"):
    """Parse the folder, trigger ``dag_id`` and run the scheduler until no run is active.

    Returns (run state, {task_id: task instance}).
    """
    from sqlalchemy import select

    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.models import DagRun, TaskInstance
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    result = parse_dag_folder(str(dags_folder))
    with create_session() as session:
        sync_parse_result_to_db(result, session)
    with create_session() as session:
        create_dag_run(session, dag_id=dag_id, run_id=run_id)
    executor = CeleryExecutor()
    job = SchedulerJob(executors=[executor], parse_dags=False)
    job.run(stop_when=lambda j: j.loop_count > 1 and not j.runs, max_loops=MAX_LOOPS)
    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one()
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                         TaskInstance.run_id == run_id)).all()
        for ti in tis:
            session.expunge(ti)
        return run.state, {ti.task_id: ti for ti in tis}


@pytest.fixture
def celery_on_services(crossdock_home, monkeypatch):
    require_service("redis")
    require_service("postgres")
    folder = crossdock_home / "dags"
    folder.mkdir()
    queue = f"it-{uuid.uuid4().hex[:10]}"
    for key, value in {
        "CORE__DAGS_FOLDER": str(folder),
        "CORE__DEFAULT_QUEUE": queue,
        "CELERY__BROKER_URL": f"{REDIS_URL}/0",
        "CELERY__RESULT_BACKEND": "db+" + POSTGRES_URL,
        "SCHEDULER__MAX_LOOP_SLEEP": "0.02",
        "SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0",
    }.items():
        monkeypatch.setenv(f"CROSSDOCK__{key}", value)
    conf.reload()
    database.migrate()
    workers = start_embedded_workers(queues=[queue], concurrency=2)
    yield folder
    workers.stop(timeout=0)  # no warm shutdown: the test is over (process_helpers.killed_when_done)


@pytest.mark.redis
@pytest.mark.postgres
def test_a_dag_runs_to_success_with_retries_and_failures_reported(celery_on_services):
    folder = celery_on_services
    (folder / "chain.py").write_text(textwrap.dedent("""
        import os
        from datetime import timedelta
        from crossdock import DAG, PythonOperator

        def first():
            print("first ran")

        def flaky(**context):
            if context["ti"].try_number < 2:
                raise RuntimeError("first try fails")

        def broken():
            raise ValueError("always broken")

        with DAG("chain") as dag:
            a = PythonOperator("a", python_callable=first)
            b = PythonOperator("b", python_callable=flaky, retries=1, retry_delay=timedelta(0))
            c = PythonOperator("c", python_callable=broken)
            a >> b >> c
    """))
    state, tis = run_dag_on_celery(folder, "chain")
    assert state == "failed"
    assert tis["a"].state == "success" and tis["a"].external_executor_id
    assert tis["b"].state == "success" and tis["b"].try_number == 2
    assert tis["c"].state == "failed"
    assert "ValueError: always broken" in tis["c"].failure_reason
    assert tis["c"].external_executor_id in tis["c"].failure_reason


@pytest.mark.redis
@pytest.mark.postgres
def test_a_scheduler_killed_with_a_task_in_flight_is_replaced_and_the_task_adopted(celery_on_services,
                                                                                  monkeypatch):
    from datetime import timedelta

    from sqlalchemy import select, update

    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.models import Job, TaskInstance
    from crossdock.models.base import utcnow
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    monkeypatch.setenv("CROSSDOCK__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD", "1")
    conf.reload()
    folder = celery_on_services
    marker = folder.parent / "in-flight-runs"
    (folder / "inflight.py").write_text(textwrap.dedent(f"""
        import os, time
        from crossdock import DAG, PythonOperator

        def slow():
            with open({str(marker)!r}, "a") as handle:
                handle.write(f"{{os.getpid()}}\\n")
            time.sleep(2)

        with DAG("inflight") as dag:
            PythonOperator("slow", python_callable=slow, retries=0)
    """))
    with create_session() as session:
        sync_parse_result_to_db(parse_dag_folder(str(folder)), session)
    with create_session() as session:
        create_dag_run(session, dag_id="inflight", run_id="r1")

    def slow_ti():
        with create_session() as session:
            ti = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == "inflight")).one()
            session.expunge(ti)
            return ti

    crashed = SchedulerJob(executors=[CeleryExecutor()], parse_dags=False)
    crashed.start()
    deadline = time.monotonic() + 60
    while slow_ti().state != "running":
        assert time.monotonic() < deadline, "the task never started"
        crashed.loop_once()
        time.sleep(0.02)
    # The scheduler dies here (no shutdown); its heartbeat goes stale.
    with create_session() as session:
        session.execute(update(Job).where(Job.id == crashed.job_id)
                        .values(latest_heartbeat=utcnow() - timedelta(seconds=60)))
    external_id = slow_ti().external_executor_id
    assert external_id

    replacement = SchedulerJob(executors=[CeleryExecutor()], parse_dags=False)
    replacement.run(stop_when=lambda j: j.loop_count > 1 and not j.runs, max_loops=MAX_LOOPS)
    ti = slow_ti()
    assert ti.state == "success"
    assert ti.try_number == 1 and ti.external_executor_id == external_id
    assert ti.queued_by_job_id == replacement.job_id
    assert len(marker.read_text().split()) == 1
