"""Branch and short-circuit operators in a try, and skip/fail exceptions, without a scheduler:
what each reports as its outcome and which bad choices fail the try."""

from __future__ import annotations

import pytest

from crossdock import DAG, AirflowSkipException, BashOperator, BranchPythonOperator, ShortCircuitOperator, task
from crossdock.dag.branch_operators import BaseBranchOperator
from crossdock.dag.exceptions import DagDefinitionError, TaskFailure
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.context import RuntimeTaskInstance, build_context
from crossdock.runner.try_values import TryValues, split_outcome, values_from_output, values_line


def run(op):
    values = TryValues(dag_id=op.dag_id, task_id=op.task_id, map_index=-1, inputs=None)
    ti = RuntimeTaskInstance(TaskInstanceKey(op.dag_id, op.task_id, "r", 1), values=values)
    result = op.execute(build_context(dag=op.dag, task=op, ti=ti))
    return result, values.outcome


def test_a_branch_reports_what_it_follows_and_refuses_what_is_not_downstream():
    with DAG("branching"):
        branch = BranchPythonOperator(task_id="branch", python_callable=lambda: ["a"])
        wrong = BranchPythonOperator(task_id="wrong", python_callable=lambda: "a")
        odd = BranchPythonOperator(task_id="odd", python_callable=lambda: 3)
        none = BranchPythonOperator(task_id="none", python_callable=lambda: None)
        a, b = BashOperator(task_id="a", bash_command="true"), BashOperator(task_id="b", bash_command="true")
        branch >> [a, b]
        none >> b
    assert run(branch) == (["a"], {"follow": ["a"]})
    assert run(none) == (None, {"follow": []})
    with pytest.raises(TaskFailure, match=r"chose 'a', which is not directly downstream of it \(downstream: none\)"):
        run(wrong)
    with pytest.raises(TaskFailure, match="returned 3; a branch returns a task id"):
        run(odd)


def test_base_branch_operator_and_task_branch_follow_their_choice():
    class Pick(BaseBranchOperator):
        def choose_branch(self, context):
            return "b"

    with DAG("custom_branch") as dag:
        pick = Pick(task_id="pick")

        @task.branch
        def decide():
            return "a"

        chosen = decide()
        a, b = BashOperator(task_id="a", bash_command="true"), BashOperator(task_id="b", bash_command="true")
        pick >> [a, b]
        chosen >> [a, b]
    assert run(pick)[1] == {"follow": ["b"]}
    assert run(dag.get_task("decide"))[1] == {"follow": ["a"]}


def test_short_circuit_goes_on_when_truthy_and_skips_by_its_setting_when_not():
    with DAG("short"):
        go = ShortCircuitOperator(task_id="go", python_callable=lambda: "yes")
        stop = ShortCircuitOperator(task_id="stop", python_callable=lambda: [])
        soft = ShortCircuitOperator(task_id="soft", python_callable=lambda: False,
                                    ignore_downstream_trigger_rules=False)
    assert run(go) == ("yes", {})
    assert run(stop) == ([], {"skip_descendants": True})
    assert run(soft) == (False, {"follow": []})


def test_the_outcome_rides_in_the_values_line_and_is_no_xcom():
    values = TryValues(dag_id="d", task_id="t", map_index=-1, inputs=None)
    values.push("n", 1)
    values.mark_skipped("why")
    xcoms, outcome = split_outcome(values_from_output(values_line(values)))
    assert xcoms == {"n": "1"} and outcome == {"state": "skipped", "reason": "why"}
    assert split_outcome({"n": "1"}) == ({"n": "1"}, {})
    with pytest.raises(Exception, match="crossdock's own"):
        values.push("__crossdock_outcome__", 1)


def test_bash_skip_codes_skip_and_bad_ones_are_refused(tmp_path):
    with DAG("bash_skips"):
        default = BashOperator(task_id="default", bash_command="exit 99")
        listed = BashOperator(task_id="listed", bash_command="exit 7", skip_on_exit_code=[7, 8])
        off = BashOperator(task_id="off", bash_command="exit 99", skip_on_exit_code=None)
    with pytest.raises(AirflowSkipException, match="exited with code 99"):
        run(default)
    with pytest.raises(AirflowSkipException, match="code 7"):
        run(listed)
    with pytest.raises(TaskFailure, match="exited with code 99"):
        run(off)
    with pytest.raises(DagDefinitionError, match="skip_on_exit_code must be exit codes"):
        BashOperator(task_id="bad", bash_command="true", skip_on_exit_code="99", dag=DAG("bad_skip"))
