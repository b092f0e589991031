"""Skipping, branching and short-circuits through the scheduler, on the LocalExecutor and
on embedded Celery workers, with every trigger rule the outcome depends on.

The deciding try has no database: it reports its choice with its outcome and the scheduler
skips the rest. What ran is proven by a ledger file each task appends to, not by the
scheduler's own records.
"""

from __future__ import annotations


import pytest

from crossdock.configuration import conf
from crossdock.state import TaskInstanceState as S

from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files
from process_helpers import killed_when_done

DAG_FILE = '''
import os
from crossdock import (DAG, AirflowFailException, AirflowSkipException, BashOperator, BranchPythonOperator,
                       PythonOperator, ShortCircuitOperator, task)

LEDGER = {ledger!r}

def note(name):
    with open(LEDGER, "a") as handle:
        handle.write(name + "\\n")

def step(name, trigger_rule="all_success", **kwargs):
    return PythonOperator(task_id=name, python_callable=note, op_args=[name], trigger_rule=trigger_rule, **kwargs)

def skip_me():
    note("skipper")
    raise AirflowSkipException("nothing to do today")

def fail_now():
    note("fail_now")
    raise AirflowFailException("the input is corrupt")

with DAG("flow", schedule=None) as dag:
    branch = BranchPythonOperator(task_id="branch", python_callable=lambda: "left")
    left, right = step("left"), step("right")
    join = step("join", trigger_rule="none_failed_min_one_success")
    branch >> [left, right] >> join

    @task.branch
    def pick():
        return ["b1", "b2"]
    picked = pick()
    picked >> [step("b1"), step("b2"), step("b3")]

    check = ShortCircuitOperator(task_id="check", python_callable=lambda: False)
    after = step("after")
    check >> after >> step("after_always", trigger_rule="always")
    after >> step("after_all_done", trigger_rule="all_done")

    soft = ShortCircuitOperator(task_id="soft_check", python_callable=lambda: 0,
                                ignore_downstream_trigger_rules=False)
    soft >> step("soft_next") >> step("soft_all_done", trigger_rule="all_done")

    skipper = PythonOperator(task_id="skipper", python_callable=skip_me)
    skipper >> step("after_skip") 
    skipper >> step("none_skipped_task", trigger_rule="none_skipped")
    skipper >> step("all_skipped_task", trigger_rule="all_skipped")

    bash_skip = BashOperator(task_id="bash_skip", bash_command="exit 99")
    bash_fail = BashOperator(task_id="bash_fail", bash_command="exit 3", skip_on_exit_code=None)
    bash_fail >> step("one_failed_task", trigger_rule="one_failed")
    [bash_skip, bash_fail] >> step("one_done_task", trigger_rule="one_done")

    PythonOperator(task_id="fail_now", python_callable=fail_now, retries=3, retry_delay=0)
    BranchPythonOperator(task_id="bad_branch", python_callable=lambda: "join")
'''

EXPECTED = {
    "branch": S.SUCCESS, "left": S.SUCCESS, "right": S.SKIPPED, "join": S.SUCCESS,
    "pick": S.SUCCESS, "b1": S.SUCCESS, "b2": S.SUCCESS, "b3": S.SKIPPED,
    # everything after a short-circuit is skipped whatever its rule, except what already ran:
    # an "always" task does not wait for its upstream at all (Airflow's meaning too)
    "check": S.SUCCESS, "after": S.SKIPPED, "after_always": S.SUCCESS, "after_all_done": S.SKIPPED,
    "soft_check": S.SUCCESS, "soft_next": S.SKIPPED, "soft_all_done": S.SUCCESS,  # rules decide past the first
    "skipper": S.SKIPPED, "after_skip": S.SKIPPED, "none_skipped_task": S.SKIPPED, "all_skipped_task": S.SUCCESS,
    "bash_skip": S.SKIPPED, "bash_fail": S.FAILED, "one_failed_task": S.SUCCESS, "one_done_task": S.SUCCESS,
    "fail_now": S.FAILED, "bad_branch": S.FAILED,
}
RAN = {"after_always", "left", "join", "b1", "b2", "soft_all_done", "all_skipped_task", "one_failed_task", "one_done_task",
       "skipper", "fail_now"}


@pytest.fixture
def flow_dag(crossdock_home, monkeypatch):
    ledger = crossdock_home / "ledger.txt"
    return use_dag_files(crossdock_home, monkeypatch, {"flow.py": DAG_FILE.format(ledger=str(ledger))}), ledger


def check_outcomes(folder, ledger, executor):
    parse_and_trigger(folder, "flow")
    run_scheduler(executor)
    state, tis = run_states("flow")
    assert state == "failed"
    assert {task_id: ti.state for task_id, ti in tis.items()} == EXPECTED
    ran = ledger.read_text().split()
    assert sorted(ran) == sorted(RAN)  # each ran once: nothing skipped ran, nothing ran twice
    assert tis["fail_now"].try_number == 1 and "not retried" in tis["fail_now"].failure_reason
    assert "'join', which is not directly downstream of it (downstream: none)" in tis["bad_branch"].failure_reason
    assert tis["skipper"].failure_reason == "nothing to do today"


def test_skips_branches_and_short_circuits_on_the_local_executor(flow_dag):
    from crossdock.executors.local_executor import LocalExecutor

    check_outcomes(*flow_dag, LocalExecutor(parallelism=4))


AIRFLOW_IMPORTS = """from airflow import DAG
from airflow.decorators import task
from airflow.exceptions import AirflowFailException, AirflowSkipException
from airflow.operators.bash import BashOperator
from airflow.operators.python import BranchPythonOperator, PythonOperator, ShortCircuitOperator
"""


def test_the_same_dag_file_with_unchanged_airflow_imports_runs_under_the_alias(flow_dag, monkeypatch):
    """[core] airflow_import_alias: the file as an Airflow 2.x user wrote it, airflow.* imports."""
    from crossdock.dag import airflow_alias
    from crossdock.executors.local_executor import LocalExecutor

    folder, ledger = flow_dag
    path = folder / "flow.py"
    source = path.read_text()
    start = source.index("from crossdock import (")
    end = source.index(")", start) + 1
    path.write_text(source[:start] + AIRFLOW_IMPORTS + source[end:])
    assert "from crossdock" not in path.read_text() and "import crossdock" not in path.read_text()
    monkeypatch.setenv("CROSSDOCK__CORE__AIRFLOW_IMPORT_ALIAS", "True")
    conf.reload()
    try:
        check_outcomes(folder, ledger, LocalExecutor(parallelism=4))
    finally:
        airflow_alias.uninstall()


def test_skips_branches_and_short_circuits_on_celery(flow_dag):
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.executors.celery_worker import start_embedded_workers

    with killed_when_done(start_embedded_workers(queues=["default"], concurrency=2)):
        check_outcomes(*flow_dag, CeleryExecutor())
