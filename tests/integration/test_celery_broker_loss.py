"""A Redis broker and result backend that go away and come back empty, under a running DAG.

Real parts only: the run's private ``redis-server`` (broker in db 0 and, in one variant,
result backend in db 1, so both lose everything when it is stopped and started again; in
the other the result backend is PostgreSQL), a real ``crossdock celery worker`` process,
PostgreSQL as the metadata database and the scheduler's own loop. Each
try appends ``dag_id task_id try_number`` to a ledger file when its work is done, so
"ran once" is proved by what the tasks did, not by what the scheduler recorded.
"""

from __future__ import annotations

import logging
import textwrap
import time
import uuid
from collections import Counter

import pytest

from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_worker import start_embedded_workers
from service_gates import REDIS_URL, redis_server, require_service
from executor_doubles import loop_until

STRANDED = [f"stranded_{i}" for i in range(4)]
FINISHING_IN_OUTAGE = ["quick_0", "quick_1"]
RUNNING_ACROSS_OUTAGE = "long"


def _write_dag(folder, ledger, starts) -> None:
    (folder / "broker_loss.py").write_text(textwrap.dedent(f"""
        import time
        from crossdock import DAG, PythonOperator

        def stranded_all_started():
            with open({str(starts)!r}) as handle:
                started = {{line.split()[0] for line in handle}}
            return started >= set({STRANDED!r})

        def until_stranded_ran_again():
            # Running from before the outage until its stranded tries were published again
            # and started (its claim had to outlive the republish), and a second more.
            deadline = time.monotonic() + 60
            while not stranded_all_started() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)

        def work(seconds):
            def run(**context):
                ti = context["ti"]
                with open({str(starts)!r}, "a") as handle:
                    handle.write(f"{{ti.task_id}} {{time.time()}}\\n")
                until_stranded_ran_again() if seconds is None else time.sleep(seconds)
                with open({str(ledger)!r}, "a") as handle:
                    handle.write(f"{{ti.dag_id}} {{ti.task_id}} {{ti.try_number}}\\n")
            return run

        with DAG("broker_loss") as dag:
            PythonOperator({RUNNING_ACROSS_OUTAGE!r}, python_callable=work(None), priority_weight=10)
            for name in {FINISHING_IN_OUTAGE!r}:
                PythonOperator(name, python_callable=work(2), priority_weight=9)
            for name in {STRANDED!r}:
                PythonOperator(name, python_callable=work(0.2), priority_weight=1)
    """))


def _lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _started(starts) -> dict[str, float]:
    return {task_id: float(at) for task_id, at in (line.split() for line in _lines(starts))}


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.parametrize("result_backend", ["redis", "postgres"])
def test_redis_coming_back_empty_republishes_stranded_tries_and_keeps_finished_work(
        result_backend, postgres_url, dags_folder, monkeypatch, caplog):
    """With a Redis backend the claims and outcomes vanish too; with PostgreSQL only the messages."""
    from sqlalchemy import select

    import redis

    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.models import DagRun, TaskInstance
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    require_service("redis")
    server = redis_server()
    queue = f"it-{uuid.uuid4().hex[:10]}"
    for key, value in {
        "CORE__DEFAULT_QUEUE": queue,
        "CELERY__BROKER_URL": f"{REDIS_URL}/0",
        "CELERY__RESULT_BACKEND": f"{REDIS_URL}/1" if result_backend == "redis" else "db+" + postgres_url,
        "SCHEDULER__MAX_LOOP_SLEEP": "0.02",
        "SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0",
    }.items():
        monkeypatch.setenv(f"CROSSDOCK__{key}", value)
    conf.reload()
    ledger, starts = dags_folder.parent / "ledger", dags_folder.parent / "starts"
    _write_dag(dags_folder, ledger, starts)
    with create_session() as session:
        sync_parse_result_to_db(parse_dag_folder(str(dags_folder)), session)
    with create_session() as session:
        create_dag_run(session, dag_id="broker_loss", run_id="r1")
    broker = redis.Redis.from_url(f"{REDIS_URL}/0")
    workers = start_embedded_workers(queues=[queue], concurrency=3, hostname_prefix="loss-")
    job = SchedulerJob(executors=[CeleryExecutor()], parse_dags=False)
    caplog.set_level(logging.INFO, logger="crossdock.executors")
    try:
        job.start()

        def queued_messages():
            try:
                return broker.llen(queue)
            except redis.RedisError:
                return -1

        # Three tries run on the worker's three processes; the other four wait in Redis.
        loop_until(job, lambda: len(_started(starts)) == 3 and queued_messages() == len(STRANDED),
                   "three tries running and four messages waiting")
        assert set(_started(starts)) == {RUNNING_ACROSS_OUTAGE, *FINISHING_IN_OUTAGE}

        server.stop()
        # Two tries finish their work while nothing can store their outcome.
        loop_until(job, lambda: {line.split()[1] for line in _lines(ledger)} >= set(FINISHING_IN_OUTAGE),
                   "the quick tries to finish during the outage")
        server.start()  # empty: the four messages, every claim and every result are gone
        back_at = time.time()

        loop_until(job, lambda: not job.runs, "the DAG run to finish")
    finally:
        job.shutdown()
        workers.stop(timeout=0)  # no warm shutdown: the run is over (process_helpers.killed_when_done)
        broker.close()

    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == "broker_loss")).one()
        tis = {ti.task_id: ti for ti in session.scalars(select(TaskInstance).where(
            TaskInstance.dag_id == "broker_loss"))}
        assert run.state == "success"
        assert {task_id: (ti.state, ti.try_number) for task_id, ti in tis.items()} == {
            task_id: ("success", 1) for task_id in tis}

    # What the tasks did: every task's work done exactly once, by its first try.
    done = Counter(_lines(ledger))
    assert done == Counter(f"broker_loss {task_id} 1" for task_id in tis)
    started = _started(starts)
    stranded_running_after = max(started[task_id] for task_id in STRANDED) - back_at
    print(f"\n[{result_backend} backend] Redis back empty -> every stranded try running: "
          f"{stranded_running_after:.1f} s")

    warnings = [record.getMessage() for record in caplog.records
                if record.name == "crossdock.executors.CeleryExecutor" and record.levelno >= logging.WARNING]
    # One line when the outage starts, one when it ends, one saying what came back empty.
    assert len(warnings) <= 3, warnings
    assert any("unreachable" in line for line in warnings), warnings
    assert any("reachable again" in line for line in warnings), warnings
    assert any("came back empty" in line for line in warnings), warnings
