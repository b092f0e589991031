"""A DAG's success and failure callbacks run in a process of their own, never the scheduler's,
with the try's environment (no database settings), and a raising callback is only logged."""

from __future__ import annotations

import json
import os
import time

from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files

DAG_FILE = '''
import json, os
from crossdock import DAG, PythonOperator

def record(context):
    with open({ledger!r}, "a") as handle:
        handle.write(json.dumps({{"dag": context["dag"].dag_id, "state": context["state"],
                                  "reason": context["reason"], "run_id": context["dag_run"].run_id,
                                  "pid": os.getpid(),
                                  "db_setting": "CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN" in os.environ}}) + "\\n")

def broken(context):
    raise RuntimeError("callback bug")

def fail():
    raise ValueError("no")

with DAG("good", schedule=None, on_success_callback=record, on_failure_callback=broken):
    PythonOperator(task_id="ok", python_callable=lambda: None)

with DAG("bad", schedule=None, on_success_callback=broken, on_failure_callback=[broken, record]):
    PythonOperator(task_id="boom", python_callable=fail)
'''


def test_dag_callbacks_run_outside_the_scheduler_with_the_reason(crossdock_home, monkeypatch):
    from crossdock.executors.local_executor import LocalExecutor
    from crossdock.runner.dag_callback import callback_log_path

    ledger = crossdock_home / "ledger.txt"
    folder = use_dag_files(crossdock_home, monkeypatch, {"callback_dags.py": DAG_FILE.format(ledger=str(ledger))},
                           DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{crossdock_home / 'crossdock.db'}")
    parse_and_trigger(folder, "good")
    parse_and_trigger(folder, "bad")
    run_scheduler(LocalExecutor(parallelism=2))
    assert run_states("good")[0] == "success" and run_states("bad")[0] == "failed"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not ledger.exists() or len(ledger.read_text().splitlines()) < 2):
        time.sleep(0.1)
    records = sorted((json.loads(line) for line in ledger.read_text().splitlines()), key=lambda r: r["dag"])
    assert [(r["dag"], r["state"], r["reason"]) for r in records] == [
        ("bad", "failed", "task failure: boom"), ("good", "success", "success")]
    assert all(r["pid"] != os.getpid() and r["db_setting"] is False and r["run_id"] == "r1" for r in records)
    assert "RuntimeError: callback bug" in callback_log_path("bad", "r1").read_text()
