"""XCom pieces on their own: the value format, pulls and pushes in a try, the handover word,
the scheduler's per-run store, and how TaskFlow calls and ``.output`` wire tasks."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import secrets

import pytest

from crossdock import DAG, BashOperator, PythonOperator, task
from crossdock.dag.exceptions import DagCycleError, XComError
from crossdock.dag.xcom_arg import XComArg
from crossdock.dag.xcom_values import deserialize_value, serialize_value
from crossdock.runner.command import UsageError, parse_task_command, task_run_command
from crossdock.runner.task_runner import push_result
from crossdock.runner.try_inputs import MAX_INPUTS_CHARS, decode_inputs, encode_inputs
from crossdock.runner.try_values import TryValues, values_from_output, values_line
from crossdock.models.taskinstancekey import TaskInstanceKey


# -- the value format --------------------------------------------------------------------
def test_json_and_the_types_airflow_keeps_round_trip():
    value = {"n": 1, "f": 1.5, "s": "ü", "none": None, "list": [1, "a"], "tuple": (1, (2, 3)),
             "set": {3, 1}, "when": datetime(2024, 1, 2, 3, 4, tzinfo=timezone.utc), "day": date(2024, 1, 2),
             "at": time(3, 4), "delta": timedelta(seconds=90)}
    assert deserialize_value(serialize_value(value)) == value


def test_a_value_of_another_type_is_refused_naming_the_type_and_where_it_is():
    with pytest.raises(XComError, match=r"the value\['rows'\]\[1\] is of type decimal.Decimal"):
        from decimal import Decimal

        serialize_value({"rows": [1, Decimal("2")]})


def test_a_value_over_the_limit_is_refused_with_its_size():
    with pytest.raises(XComError, match=r"is 12 bytes as JSON, over the limit of 10 \(\[core\] max_xcom_size\)"):
        serialize_value("x" * 10, limit=10)
    assert serialize_value("x" * 8, limit=10) == '"xxxxxxxx"'


# -- pulls and pushes in a try ------------------------------------------------------------
def handed(values: dict, *, upstream=None, withheld=()):
    word = encode_inputs(conf={"k": 1}, run_type="manual",
                         values=[(task_id, index, key, serialize_value(value))
                                 for (task_id, index, key), value in values.items()],
                         upstream=upstream if upstream is not None else {task_id for task_id, _, _ in values},
                         withheld=withheld)
    return decode_inputs(word)


def try_values(values: dict, **kwargs) -> TryValues:
    return TryValues(dag_id="d", task_id="me", map_index=-1, inputs=handed(values, **kwargs),
                     dag_task_ids=["a", "b", "m", "me", "far"])


def test_pull_follows_airflows_rules_for_one_id_a_list_of_ids_keys_and_defaults():
    values = try_values({("a", -1, "return_value"): 1, ("b", -1, "return_value"): 2, ("a", -1, "extra"): "x"})
    assert values.pull("a") == 1 and values.pull(task_ids="a", key="extra") == "x"
    assert values.pull(["b", "a"]) == [2, 1]  # in the order asked for
    assert values.pull(["b", "m"]) == [2]  # a task without the value is left out
    assert values.pull("m", default="none") == "none"
    assert sorted(values.pull(["a"], key=None), key=str) == [1, "x"]  # key=None: every key


def test_pull_of_a_mapped_task_gives_every_index_in_order_or_the_ones_asked_for():
    values = try_values({("m", 1, "return_value"): "one", ("m", 0, "return_value"): "zero"})
    assert values.pull("m") == ["zero", "one"]
    assert values.pull("m", map_indexes=1) == "one"


def test_pulls_that_cannot_be_answered_here_say_why():
    values = try_values({("a", -1, "return_value"): 1}, withheld=["far"], upstream=["a", "far"])
    with pytest.raises(XComError, match="DAG 'other'.*own DAG run only"):
        values.pull("a", dag_id="other")
    with pytest.raises(XComError, match="task 'nope', which DAG 'd' does not have"):
        values.pull("nope")
    with pytest.raises(XComError, match="values of task 'far' were not handed"):
        values.pull("far")
    with pytest.raises(XComError, match="include_prior_dates=True.*own run only"):
        values.pull("b", include_prior_dates=True)
    assert values.pull("a", include_prior_dates=True) == 1  # found in this run: fine


def test_a_try_reads_back_what_it_pushed_and_reports_it_last():
    values = try_values({})
    values.push("k", (1, 2))
    assert values.pull("me", key="k") == (1, 2)
    line = values_line(values)
    assert line.endswith("\n") and values_from_output("task output\n" + line) == {"k": '{"__crossdock_type__":["tuple",[1,2]]}'}
    assert values_from_output("no values here\n") is None
    with pytest.raises(XComError, match="non-empty string"):
        values.push("", 1)


def test_push_result_follows_do_xcom_push_and_multiple_outputs():
    with DAG("push"):
        plain = PythonOperator(task_id="plain", python_callable=lambda: None)
        many = PythonOperator(task_id="many", python_callable=lambda: None, multiple_outputs=True)
        quiet = PythonOperator(task_id="quiet", python_callable=lambda: None, do_xcom_push=False)
    values = try_values({})
    push_result(plain, values, None)
    assert values.pushed == {}
    push_result(many, values, {"a": 1})
    assert values.pushed == {"a": "1", "return_value": '{"a":1}'}
    push_result(quiet, values, 5)
    assert "5" not in values.pushed.values()
    with pytest.raises(XComError, match="multiple_outputs=True and returned list, not a dict"):
        push_result(many, values, [1])


# -- the handover word --------------------------------------------------------------------
def test_inputs_ride_in_the_task_command_and_parse_back():
    word = encode_inputs(conf={"x": [1]}, run_type="manual", values=[("a", -1, "return_value", "3")],
                         upstream=["a"])
    command = task_run_command(TaskInstanceKey("d", "t", "r", 1), inputs=word)
    parsed = parse_task_command(command)
    inputs = decode_inputs(parsed.inputs)
    assert inputs.conf == {"x": [1]} and inputs.values == {("a", -1, "return_value"): 3}
    with pytest.raises(UsageError, match="not a valid handover"):
        decode_inputs("eJnot-really")


def test_the_scheduler_hands_over_upstream_values_nearest_first_within_the_limit():
    from crossdock.scheduler.value_handover import RunValues, ValueHandoverError, handover_for, upstream_order

    class Task:
        def __init__(self, upstream):
            self.upstream_task_ids = frozenset(upstream)

    class Dag:
        def __init__(self):
            self.tasks = {"far": Task([]), "near": Task(["far"]), "side": Task([]), "me": Task(["near"])}

    dag = Dag()
    assert upstream_order(dag, "me") == ["near", "far"]
    values = RunValues()
    # random text: it does not compress below the limit
    values.store(("far", -1), {"return_value": '"' + secrets.token_hex(100_000) + '"'})
    values.store(("near", -1), {"return_value": "1"})
    values.store(("side", -1), {"return_value": "2"})
    inputs = decode_inputs(handover_for(dag, "me", values, conf=None, run_type=None))
    assert ("side", -1, "return_value") not in inputs.values  # not upstream
    assert inputs.values == {("near", -1, "return_value"): 1} and inputs.withheld == {"far"}
    values.store(("near", -1), {"return_value": '"' + secrets.token_hex(MAX_INPUTS_CHARS) + '"'})
    with pytest.raises(ValueHandoverError, match="direct upstream tasks of 'me'"):
        handover_for(dag, "me", values, conf=None, run_type=None)
    assert handover_for(dag, "far", values, conf=None, run_type=None) is None  # nothing to hand over


def test_run_values_track_what_the_next_flush_writes():
    from crossdock.scheduler.value_handover import RunValues

    values = RunValues()
    values.store(("a", -1), {"return_value": "1"})
    assert values.to_insert == {("a", -1): {"return_value": "1"}} and not values.to_delete
    values.written()
    values.clear(("a", -1))  # a retry: the stored row goes
    assert values.to_delete == {("a", -1)} and values.by_task == {}
    values.clear(("b", -1))  # nothing stored: nothing to delete
    assert values.to_delete == {("a", -1)}


# -- wiring in the DAG file ------------------------------------------------------------------
def test_taskflow_calls_wire_tasks_and_infer_multiple_outputs_from_a_dict_annotation():
    with DAG("wiring") as dag:
        @task
        def extract() -> dict:
            return {}

        @task
        def load(total, n):
            pass

        result = extract()
        load(result["total"], n=result["n"])
        report = BashOperator(task_id="report", bash_command=result)
        echo = BashOperator(task_id="echo", bash_command="echo {{ x }}", env={"V": report.output})
    assert dag.get_task("extract").multiple_outputs is True
    assert dag.get_task("load").upstream_task_ids == {"extract"}
    assert report.upstream_task_ids == {"extract"} and echo.upstream_task_ids == {"report"}
    assert isinstance(report.output, XComArg) and report.output.key == "return_value"
    with pytest.raises(TypeError, match="not iterable"):
        list(result)


def test_a_taskflow_call_wired_into_a_cycle_is_refused():
    with DAG("cycle"):
        @task
        def one(x=None):
            pass

        first = one()
        second = one(first)
        with pytest.raises(DagCycleError, match="cycle"):
            first.operator.set_upstream(second.operator)
