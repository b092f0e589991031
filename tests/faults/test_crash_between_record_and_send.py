"""A scheduler that dies after recording a try as queued but before its executor sent it.

The active scheduler writes every queued Celery try (with its Celery id) to the database
before the executor publishes it, so whatever instant it dies at, the next active
scheduler knows each try that may be out. This plays the worst instant: recorded, never
published. The successor must get the try run, exactly once, without waiting for
``task_queued_timeout``.
"""

from __future__ import annotations

import textwrap
import uuid

import pytest
from sqlalchemy import select

from crossdock import database
from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_worker import start_embedded_workers
from failover_support import ledger_counts
from service_gates import REDIS_URL, require_service


@pytest.fixture
def celery_home(dags_folder, monkeypatch):
    require_service("redis")
    queue = f"gap-{uuid.uuid4().hex[:8]}"
    for key, value in {
        "CORE__DEFAULT_QUEUE": queue,
        "CELERY__BROKER_URL": f"{REDIS_URL}/4",
        "CELERY__RESULT_BACKEND": f"{REDIS_URL}/5",
        "SCHEDULER__STANDBY_TAKEOVER_SECONDS": "1",
        "SCHEDULER__MAX_LOOP_SLEEP": "0.02",
        "SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0",
        "SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
    }.items():
        monkeypatch.setenv(f"CROSSDOCK__{key}", value)
    conf.reload()
    database.migrate()
    workers = start_embedded_workers(queues=[queue], concurrency=2)
    yield dags_folder
    workers.stop(timeout=0)  # no warm shutdown: the test is over (process_helpers.killed_when_done)


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_a_try_recorded_but_never_sent_is_sent_by_the_successor_and_runs_once(celery_home, tmp_path):
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.models import DagRun, TaskInstance
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    ledger = tmp_path / "ledger.txt"
    (celery_home / "gap.py").write_text(textwrap.dedent(f"""
        import os
        from crossdock import DAG, PythonOperator

        def work(**context):
            with open({str(ledger)!r}, "a") as handle:
                handle.write(context["ti"].task_id + "\\n")

        with DAG("gap") as dag:
            PythonOperator(task_id="only", python_callable=work)
    """))
    with create_session() as session:
        sync_parse_result_to_db(parse_dag_folder(str(celery_home)), session)
    with create_session() as session:
        create_dag_run(session, dag_id="gap", run_id="r1")

    dying_executor = CeleryExecutor()
    dying_executor.trigger_tasks = lambda open_slots: None  # dies before its first publish
    dying = SchedulerJob(executors=[dying_executor], parse_dags=False)
    assert dying.start()
    dying.loop_once()
    with create_session() as session:
        recorded = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == "gap")).one()
        assert recorded.state == "queued" and recorded.external_executor_id
        celery_id = recorded.external_executor_id
    # The dying scheduler is abandoned here: no shutdown, no lease released.

    successor = SchedulerJob(executors=[CeleryExecutor()], parse_dags=False)
    successor.run(stop_when=lambda job: job.loop_count > 1 and not job.runs, max_loops=200_000)

    with create_session() as session:
        ti = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == "gap")).one()
        run = session.scalars(select(DagRun).where(DagRun.dag_id == "gap")).one()
    assert run.state == "success"
    assert ti.state == "success" and ti.try_number == 1 and ti.external_executor_id == celery_id
    assert ledger_counts(ledger) == {"only": 1}
