"""A try whose Celery worker dies under it runs again without spending the task's retries.

Real parts only: ``crossdock celery worker`` processes killed with SIGKILL, the run's
private Redis as broker, Redis or PostgreSQL as result backend, PostgreSQL as the metadata
database and the scheduler's own loop. Each try notes its start in one file and appends
``dag_id task_id try_number`` to a ledger when its work is done: the ledger, not the
scheduler's records, shows the work ran to success once.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
import uuid

import pytest

from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_worker import start_embedded_workers
from process_helpers import process_gone, wait_for
from service_gates import REDIS_URL, require_service
from executor_doubles import loop_until



@pytest.fixture(params=["redis", "postgres"])
def lost_worker_setup(request, postgres_url, dags_folder, monkeypatch):
    """A one-task DAG with no retries; the result backend is Redis, then PostgreSQL.

    Returns (queue, ledger, starts).
    """
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.scheduler.dag_runs import create_dag_run

    require_service("redis")
    queue = f"it-{uuid.uuid4().hex[:10]}"
    for key, value in {
        "CORE__DEFAULT_QUEUE": queue,
        "CELERY__BROKER_URL": f"{REDIS_URL}/0",
        "CELERY__RESULT_BACKEND": f"{REDIS_URL}/1" if request.param == "redis" else "db+" + postgres_url,
        "CELERY__TRY_LEASE_RENEW_INTERVAL": "0.5",
        "CELERY__TRY_LEASE_TIMEOUT": "3",
        "SCHEDULER__MAX_LOOP_SLEEP": "0.02",
        "SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0",
    }.items():
        monkeypatch.setenv(f"CROSSDOCK__{key}", value)
    conf.reload()
    ledger, starts = dags_folder.parent / "ledger", dags_folder.parent / "starts"
    (dags_folder / "lost_worker.py").write_text(textwrap.dedent(f"""
        import os, time
        from crossdock import DAG, PythonOperator

        def victim(**context):
            ti = context["ti"]
            with open({str(starts)!r}, "a") as handle:
                handle.write(f"{{ti.try_number}} {{os.getpid()}} {{time.time()}}\\n")
            time.sleep(6 if ti.try_number == 1 else 0.2)  # try 1 must still run when it is lost
            with open({str(ledger)!r}, "a") as handle:
                handle.write(f"{{ti.dag_id}} {{ti.task_id}} {{ti.try_number}}\\n")

        with DAG("lost_worker") as dag:
            PythonOperator("victim", python_callable=victim, retries=0)
    """))
    with create_session() as session:
        sync_parse_result_to_db(parse_dag_folder(str(dags_folder)), session)
    with create_session() as session:
        create_dag_run(session, dag_id="lost_worker", run_id="r1")
    return queue, ledger, starts


def _starts(path) -> list[tuple[int, int, float]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(tries), int(pid), float(at)) for tries, pid, at in (line.split() for line in lines)]


def _run_with_a_loss(queue, ledger, starts, kill, on_second_try=None) -> tuple[float, object, bool]:
    """Run the DAG; once try 1 runs, ``kill(doomed_workers)``. Returns (seconds to try 2, ti,
    whether try 1's process was gone within 10 s of the run's end, with every worker still as
    the loss left it).

    ``on_second_try(doomed_workers)`` is called once try 2 has started.
    """
    from sqlalchemy import select

    from crossdock.models import TaskInstance
    from crossdock.scheduler.scheduler_job import SchedulerJob

    started = []
    job = SchedulerJob(executors=[CeleryExecutor()], parse_dags=False)
    try:
        doomed = start_embedded_workers(queues=[queue], concurrency=1, hostname_prefix="doomed-")
        started.append(doomed)
        job.start()

        loop_until(job, lambda: _starts(starts), "try 1 to start")
        started.append(start_embedded_workers(queues=[queue], concurrency=1, hostname_prefix="survivor-"))
        kill(doomed)
        killed_at = time.time()
        if on_second_try is not None:
            loop_until(job, lambda: len(_starts(starts)) == 2, "try 2 to start")
            on_second_try(doomed)
        loop_until(job, lambda: not job.runs, "the DAG run to finish")
        # Before the workers are killed below: try 1 ends by its loss (or, wrongly, by
        # finishing its work, which the ledger then shows), not because the test ended it.
        first_pid = _starts(starts)[0][1]
        first_gone = wait_for(lambda: process_gone(first_pid), limit=10)
    finally:
        job.shutdown()
        for workers in started:
            workers.stop(timeout=0)  # no warm shutdown: the run is over (process_helpers.killed_when_done)
    with create_session() as session:
        ti = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == "lost_worker")).one()
        session.expunge(ti)
    second = [at for tries, _pid, at in _starts(starts) if tries == 2]
    return (second[0] - killed_at if second else float("nan")), ti, first_gone


def _check_ran_to_success_once(ledger, starts, ti, first_gone: bool) -> None:
    assert ti.state == "success", ti.failure_reason
    assert ti.try_number == 2
    assert ti.max_tries == 1  # retries=0, plus the one try the lost worker cost
    assert [tries for tries, _pid, _at in _starts(starts)] == [1, 2]
    assert first_gone, "the lost try's process outlived its loss"
    assert ledger.read_text().splitlines() == ["lost_worker victim 2"]


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def _kill_pool_process_of_try(starts):
    """SIGKILL the pool process running try 1 (the try's grandparent), leaving the worker alive."""

    def kill(workers) -> None:
        try_pid = _starts(starts)[0][1]
        pool_pid = _parent_pid(_parent_pid(try_pid))  # try <- zygote <- pool process
        assert pool_pid not in {process.pid for process in workers.processes}
        os.kill(pool_pid, signal.SIGKILL)

    return kill


@pytest.mark.redis
@pytest.mark.postgres
def test_a_worker_killed_mid_try_is_noticed_and_the_try_runs_again_uncharged(lost_worker_setup):
    queue, ledger, starts = lost_worker_setup
    recovery, ti, first_gone = _run_with_a_loss(queue, ledger, starts, kill=lambda workers: workers.kill())
    _check_ran_to_success_once(ledger, starts, ti, first_gone)
    print(f"\nworker SIGKILLed -> the task's next try running: {recovery:.1f} s")


@pytest.mark.redis
@pytest.mark.parametrize("lost_worker_setup", ["redis"], indirect=True)  # the kill above runs on both
def test_a_pool_process_killed_mid_try_is_a_lost_worker_too(lost_worker_setup):
    """Celery reports WorkerLostError when only the process running the try dies."""
    queue, ledger, starts = lost_worker_setup

    recovery, ti, first_gone = _run_with_a_loss(queue, ledger, starts, kill=_kill_pool_process_of_try(starts))
    _check_ran_to_success_once(ledger, starts, ti, first_gone)
    print(f"\npool process SIGKILLed -> the task's next try running: {recovery:.1f} s")


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.parametrize("lost_worker_setup", ["postgres"], indirect=True)  # the kill above runs on both
def test_a_frozen_worker_given_up_as_lost_stops_its_try_when_it_thaws(lost_worker_setup):
    """A worker stopped (SIGSTOP) past the lease is given up; thawed, it must not finish the try."""
    queue, ledger, starts = lost_worker_setup
    frozen: list[tuple[int, bool]] = []

    def freeze(workers) -> None:
        try_pid = _starts(starts)[0][1]
        for pid, group in ((workers.processes[0].pid, True), (try_pid, False)):
            (os.killpg if group else os.kill)(pid, signal.SIGSTOP)
            frozen.append((pid, group))

    def thaw(_workers) -> None:
        for pid, group in frozen:
            (os.killpg if group else os.kill)(pid, signal.SIGCONT)

    recovery, ti, first_gone = _run_with_a_loss(queue, ledger, starts, kill=freeze, on_second_try=thaw)
    _check_ran_to_success_once(ledger, starts, ti, first_gone)
    print(f"\nworker frozen -> the task's next try running: {recovery:.1f} s")
