"""dagrun_timeout: the run fails, unfinished tasks are skipped and a running try is stopped
through its executor (its process is gone: it never writes its last ledger line)."""

from __future__ import annotations

import time

import pytest

from crossdock.dag.exceptions import DagDefinitionError
from crossdock.state import TaskInstanceState as S

from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files


def test_a_run_past_its_dagrun_timeout_fails_and_its_running_try_is_stopped(crossdock_home, monkeypatch):
    from crossdock.executors.local_executor import LocalExecutor

    ledger = crossdock_home / "ledger.txt"
    folder = use_dag_files(crossdock_home, monkeypatch, {"slow.py": f'''
        import time
        from datetime import timedelta
        from crossdock import DAG, PythonOperator

        def note(text):
            with open({str(ledger)!r}, "a") as handle:
                handle.write(text + "\\n")

        def slow():
            note("start")
            time.sleep(30)
            note("end")

        with DAG("slow", schedule=None, dagrun_timeout=timedelta(seconds=1.5)) as dag:
            PythonOperator(task_id="quick", python_callable=lambda: None)
            PythonOperator(task_id="slow", python_callable=slow) >> PythonOperator(
                task_id="after", python_callable=lambda: note("after"))
    '''})
    parse_and_trigger(folder, "slow")
    started = time.monotonic()
    run_scheduler(LocalExecutor(parallelism=2))
    state, tis = run_states("slow")
    assert state == "failed" and time.monotonic() - started < 20
    assert {task_id: ti.state for task_id, ti in tis.items()} == {
        "quick": S.SUCCESS, "slow": S.SKIPPED, "after": S.SKIPPED}
    assert "exceeded its dagrun_timeout of 1.5s" in tis["slow"].failure_reason
    time.sleep(0.5)
    assert ledger.read_text().split() == ["start"]  # stopped: it never wrote "end", "after" never ran


def test_a_bad_dagrun_timeout_is_a_definition_error():
    from crossdock import DAG

    with pytest.raises(DagDefinitionError, match="dagrun_timeout must be a positive number"):
        DAG("bad_timeout", dagrun_timeout=0)
