"""depends_on_past, wait_for_downstream and max_active_tis_per_dag across concurrent runs of
one DAG, proven by the start and end times each try writes to a ledger."""

from __future__ import annotations

import textwrap
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update

from crossdock import database
from crossdock.configuration import conf
from crossdock.database import create_session

DAG_FILE = '''
import time
from datetime import datetime
from crossdock import DAG, PythonOperator

LEDGER = {ledger!r}

def work(task_id, ds, fail_on=None):
    with open(LEDGER, "a") as handle:
        handle.write(f"{{task_id}} {{ds}} start {{time.time()}}\\n")
    time.sleep(0.3)
    if ds == fail_on:
        raise ValueError("fails on " + ds)
    with open(LEDGER, "a") as handle:
        handle.write(f"{{task_id}} {{ds}} end {{time.time()}}\\n")

with DAG("past", schedule="@daily", start_date=datetime.fromisoformat("{start}"), catchup=True,
         max_active_runs=3) as dag:
    a = PythonOperator(task_id="a", python_callable=work, op_args=["a"], depends_on_past=True,
                       op_kwargs={{"fail_on": {fail_on!r}}})
    b = PythonOperator(task_id="b", python_callable=work, op_args=["b"], max_active_tis_per_dag=1)
    c = PythonOperator(task_id="c", python_callable=work, op_args=["c"], wait_for_downstream=True)
    d = PythonOperator(task_id="d", python_callable=work, op_args=["d"])
    c >> d
'''


def run_past_dag(crossdock_home, monkeypatch, *, fail_on=None, limit=30.0):
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.executors.local_executor import LocalExecutor
    from crossdock.models import DagModel, DagRun, TaskInstance
    from crossdock.scheduler.scheduler_job import SchedulerJob

    folder = crossdock_home / "dags"
    folder.mkdir()
    ledger = crossdock_home / "ledger.txt"
    start = (datetime.now(timezone.utc) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    first_ds = start.date().isoformat()
    (folder / "past.py").write_text(textwrap.dedent(DAG_FILE.format(
        ledger=str(ledger), start=start.isoformat(), fail_on=first_ds if fail_on else None)))
    for key, value in {"CORE__DAGS_FOLDER": str(folder), "SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0",
                       "SCHEDULER__MAX_LOOP_SLEEP": "0.02"}.items():
        monkeypatch.setenv(f"CROSSDOCK__{key}", value)
    conf.reload()
    database.migrate()
    with create_session() as session:
        sync_parse_result_to_db(parse_dag_folder(str(folder)), session)
        session.execute(update(DagModel).values(is_paused=False))

    def settled() -> bool:
        with create_session() as session:
            states = list(session.scalars(select(DagRun.state).where(DagRun.dag_id == "past")))
        return len(states) == 3 and all(state in ("success", "failed") for state in states)

    deadline = time.monotonic() + limit
    SchedulerJob(executors=[LocalExecutor(parallelism=8)], parse_dags=False).run(
        stop_when=lambda job: settled() or time.monotonic() > deadline)
    with create_session() as session:
        rows = session.execute(select(DagRun.logical_date, TaskInstance.task_id, TaskInstance.state)
                               .join(TaskInstance, (TaskInstance.run_id == DagRun.run_id)
                                     & (TaskInstance.dag_id == DagRun.dag_id))).all()
    states = {(row.logical_date.date().isoformat(), row.task_id): row.state for row in rows}
    return ledger, states, first_ds


def intervals(ledger, task_id):
    marks: dict[str, dict[str, float]] = {}
    for line in ledger.read_text().splitlines():
        name, ds, what, when = line.split()
        if name == task_id:
            marks.setdefault(ds, {})[what] = float(when)
    return [marks[ds] for ds in sorted(marks)]


def test_past_bound_tasks_run_in_order_and_a_limited_task_never_overlaps(crossdock_home, monkeypatch):
    ledger, states, _ = run_past_dag(crossdock_home, monkeypatch)
    assert set(states.values()) == {"success"} and len(states) == 12
    for earlier, later in zip(intervals(ledger, "a"), intervals(ledger, "a")[1:]):
        assert later["start"] >= earlier["end"]  # depends_on_past: after the previous run's a
    for earlier, later in zip(intervals(ledger, "b"), intervals(ledger, "b")[1:]):
        assert later["start"] >= earlier["end"]  # max_active_tis_per_dag=1: never two at once
    c_runs, d_runs = intervals(ledger, "c"), intervals(ledger, "d")
    for previous_d, next_c in zip(d_runs, c_runs[1:]):
        assert next_c["start"] >= previous_d["end"]  # wait_for_downstream: after the previous run's d


def test_a_failed_past_keeps_the_next_runs_task_waiting(crossdock_home, monkeypatch):
    ledger, states, first_ds = run_past_dag(crossdock_home, monkeypatch, fail_on=True, limit=3.0)
    assert states[(first_ds, "a")] == "failed"
    later = sorted(ds for ds, task_id in states if task_id == "a" and ds != first_ds)
    assert [states[(ds, "a")] for ds in later] == [None, None]  # waiting, never run
    assert [line for line in ledger.read_text().splitlines() if line.startswith("a ")] == [
        line for line in ledger.read_text().splitlines() if line.startswith(f"a {first_ds}")]
