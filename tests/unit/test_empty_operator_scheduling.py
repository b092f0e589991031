"""EmptyOperator tasks succeed in the scheduler: no try reaches an executor, no slot is taken;
one with a callback that only a try can run is sent as a normal try."""

from __future__ import annotations

from crossdock.state import TaskInstanceState as S

from scheduler_support import ScriptedExecutor, write_dag
from test_scheduler import dags_folder, parse, run_scheduler, run_states, trigger  # noqa: F401


def test_empty_tasks_succeed_without_an_executor(dags_folder):
    write_dag(dags_folder, "empties", """
        from crossdock import EmptyOperator

        with DAG("empties") as dag:
            start = EmptyOperator(task_id="start")
            work = BashOperator(task_id="work", bash_command="true")
            called = EmptyOperator(task_id="called", on_success_callback=lambda context: None)
            end = EmptyOperator(task_id="end")
            start >> work >> [called, end]
    """)
    parse(dags_folder)
    trigger("empties")
    executor = ScriptedExecutor()
    run_scheduler(executor)
    state, tis = run_states("empties")
    assert state == "success" and all(ti.state == S.SUCCESS for ti in tis.values())
    assert sorted(key.task_id for key in executor.started) == ["called", "work"]
    assert tis["start"].try_number == 1 and "succeeded in the scheduler" in tis["start"].routing_reason
