"""Test support for the operations layer: a real scheduler in a background thread, the
CLI called in-process, and a DAG file whose tasks write a ledger of their tries.

The scheduler is the product's own ``SchedulerJob`` with the LocalExecutor (real task
processes); it runs in a thread so a test can act on runs while it works, the way a user
at a second terminal does, and stops when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Iterator

from sqlalchemy import select

from crossdock.database import create_session
from crossdock.models import DagRun, TaskInstance

#: Seconds a test waits for something the scheduler does within a few loop steps.
WAIT_LIMIT = 60.0

LEDGER_DAGS = '''
import os
import time
from datetime import datetime

from crossdock import DAG, EmptyOperator, PythonOperator

LEDGER = {ledger!r}
GATE = {gate!r}


def note(name, **context):
    """One ledger line per try: task, try number, start and end time."""
    start = time.time()
    if name.startswith("hold"):
        while os.path.exists(GATE):
            time.sleep(0.02)
    if name.startswith("nap"):
        time.sleep(0.3)
    with open(LEDGER, "a") as ledger:
        ledger.write(f"{{name}} {{context['ti'].try_number}} {{start:.6f}} {{time.time():.6f}}\\n")
    if name == "b" and context["ti"].try_number == 1:
        raise RuntimeError("b fails its first try")


def step(task_id, **kwargs):
    return PythonOperator(task_id=task_id, python_callable=note, op_kwargs={{"name": task_id}}, **kwargs)


with DAG("flow", schedule=None):
    step("a") >> step("b") >> step("c")

with DAG("held", schedule=None):
    step("hold") >> step("after")

with DAG("quick", schedule=None):
    step("only")

with DAG("pooled", schedule=None):
    step("nap_1", pool="single")
    step("nap_2", pool="single")

if {daily!r}:
    with DAG("daily", schedule="@daily", start_date=datetime(2024, 1, 1), catchup=False, max_active_runs=3):
        EmptyOperator(task_id="start") >> step("work")
'''


def write_ledger_dags(folder: Path, *, ledger: Path, gate: Path, daily: bool = False) -> None:
    """The DAGs above in ``folder``; ``daily`` adds the scheduled one (max_active_runs=3) backfills use."""
    (folder / "ledger_dags.py").write_text(LEDGER_DAGS.format(ledger=str(ledger), gate=str(gate), daily=daily))


def ledger_lines(ledger: Path) -> list[tuple[str, int, float, float]]:
    """(task, try, start, end) per finished try, in the order they were written."""
    if not ledger.exists():
        return []
    rows = []
    for line in ledger.read_text().splitlines():
        name, try_number, start, end = line.split()
        rows.append((name, int(try_number), float(start), float(end)))
    return rows


def parse(folder: Path) -> None:
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder

    result = parse_dag_folder(str(folder))
    assert not result.import_errors, result.import_errors
    with create_session() as session:
        sync_parse_result_to_db(result, session)


def states(dag_id: str, run_id: str) -> tuple[str, dict[str, TaskInstance]]:
    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one()
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                         TaskInstance.run_id == run_id)).all()
        return run.state, {ti.task_id: ti for ti in tis}


def wait_for(predicate, *, what: str, limit: float = WAIT_LIMIT):
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        time.sleep(0.05)


def run_state_is(dag_id: str, run_id: str, *wanted: str):
    return lambda: states(dag_id, run_id)[0] in wanted


@contextlib.contextmanager
def scheduler_running(*, parallelism: int = 4, on_loop=None) -> Iterator:
    """A real scheduler (LocalExecutor) in a thread, active before the block starts, stopped after it."""
    from crossdock.executors.local_executor import LocalExecutor
    from crossdock.scheduler.scheduler_job import SchedulerJob

    job = SchedulerJob(executors=[LocalExecutor(parallelism=parallelism)], parse_dags=False)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            job.run(stop_when=(lambda j: bool(on_loop(j))) if on_loop else None)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="scheduler", daemon=True)
    thread.start()
    wait_for(lambda: failure or (job.lease is not None and job.lease.held and job.loop_count > 0),
             what="the scheduler to become active")
    try:
        yield job
    finally:
        job.stop()
        thread.join(timeout=WAIT_LIMIT)
        assert not thread.is_alive(), "the scheduler did not stop"
    if failure:
        raise failure[0]
