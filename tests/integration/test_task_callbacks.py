"""Task callbacks run in the try, by how it ended, and never change its state: one that raises
or hangs is logged. Proven by a ledger the callbacks write, through the scheduler."""

from __future__ import annotations

from crossdock.runner.task_log import task_log_path_for_key
from crossdock.state import TaskInstanceState as S

from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files

DAG_FILE = '''
import time
from crossdock import DAG, PythonOperator

LEDGER = {ledger!r}

def note(kind):
    def callback(context):
        extra = f" {{type(context['exception']).__name__}}" if context.get("exception") else ""
        with open(LEDGER, "a") as handle:
            handle.write(f"{{context['ti'].task_id}}:{{context['ti'].try_number}}:{{kind}}{{extra}}\\n")
    return callback

def flaky(ti):
    if ti.try_number == 1:
        raise ValueError("first try fails")

def broken():
    raise ValueError("always fails")

def raising(context):
    raise RuntimeError("callback bug")

def hanging(context):
    time.sleep(30)

callbacks = dict(on_execute_callback=note("execute"), on_success_callback=note("success"),
                 on_retry_callback=note("retry"), on_failure_callback=note("failure"))

with DAG("callbacks", schedule=None) as dag:
    PythonOperator(task_id="ok", python_callable=lambda: None, **callbacks)
    PythonOperator(task_id="flaky", python_callable=flaky, retries=1, retry_delay=0, **callbacks)
    PythonOperator(task_id="broken", python_callable=broken, **callbacks)
    PythonOperator(task_id="bad_callback", python_callable=lambda: None,
                   on_success_callback=[raising, note("success")])
    PythonOperator(task_id="slow_callback", python_callable=lambda: None, on_success_callback=hanging)
'''


def test_callbacks_run_by_outcome_and_never_change_it(crossdock_home, monkeypatch):
    from crossdock.executors.local_executor import LocalExecutor

    ledger = crossdock_home / "ledger.txt"
    folder = use_dag_files(crossdock_home, monkeypatch, {"callbacks.py": DAG_FILE.format(ledger=str(ledger))},
                           CORE__TASK_CALLBACK_TIMEOUT="0.5")
    parse_and_trigger(folder, "callbacks")
    run_scheduler(LocalExecutor(parallelism=4))
    _, tis = run_states("callbacks")
    assert {task_id: ti.state for task_id, ti in tis.items()} == {
        "ok": S.SUCCESS, "flaky": S.SUCCESS, "broken": S.FAILED, "bad_callback": S.SUCCESS,
        "slow_callback": S.SUCCESS}
    assert sorted(ledger.read_text().split()) == sorted([
        "ok:1:execute", "ok:1:success",
        "flaky:1:execute", "flaky:1:retry", "ValueError", "flaky:2:execute", "flaky:2:success",
        "broken:1:execute", "broken:1:failure", "ValueError",
        "bad_callback:1:success"])  # the second callback still ran after the first raised
    assert "RuntimeError: callback bug" in task_log_path_for_key(tis["bad_callback"].key).read_text()
    assert "did not finish" in task_log_path_for_key(tis["slow_callback"].key).read_text()
