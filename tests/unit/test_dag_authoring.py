"""Writing DAGs: context managers, edges, default_args, priorities, and the errors users hit."""

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from crossdock import DAG, BaseOperator, BashOperator, PythonOperator, task
from crossdock.dag.xcom_arg import XComArg
from crossdock.dag import (
    DagCycleError,
    DagDefinitionError,
    DuplicateTaskIdError,
    TaskNotFound,
)


def noop():
    return None


def test_import_crossdock_stays_light_until_the_authoring_api_is_used():
    code = ("import sys, crossdock; assert crossdock.__version__ == '0.1.0';"
            "from crossdock import DAG, task, BashOperator, PythonOperator;"
            "heavy = [m for m in ('sqlalchemy', 'celery', 'kubernetes', 'croniter') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_operators_created_inside_a_with_block_join_that_dag():
    with DAG("etl") as dag:
        first = BashOperator("first", "echo 1")
        second = PythonOperator("second", noop)
    outside = BashOperator("outside", "echo 3")
    assert dag.task_ids == ["first", "second"]
    assert first.dag is dag and second.dag_id == "etl"
    assert outside.dag is None


def test_dag_argument_attaches_without_a_context_and_positional_dag_id_works():
    dag = DAG("plain", schedule=None)
    op = BashOperator(task_id="t", bash_command="true", dag=dag)
    assert dag.get_task("t") is op


def test_nested_with_blocks_attach_to_the_innermost_dag():
    with DAG("outer") as outer:
        with DAG("inner") as inner:
            BashOperator("a", "true")
        BashOperator("b", "true")
    assert inner.task_ids == ["a"] and outer.task_ids == ["b"]


def test_shift_operators_with_lists_on_either_side():
    with DAG("shapes") as dag:
        a, b, c, d, e = (BashOperator(name, "true") for name in "abcde")
        a >> [b, c]
        [b, c] >> d
        e << d
    assert a.downstream_task_ids == {"b", "c"}
    assert d.upstream_task_ids == {"b", "c"}
    assert e.upstream_task_ids == {"d"}
    assert [t.task_id for t in dag.roots] == ["a"]
    order = [t.task_id for t in dag.topological_sort()]
    assert order.index("a") < order.index("b") < order.index("d") < order.index("e")
    assert order.index("c") < order.index("d")


def test_set_upstream_and_set_downstream():
    with DAG("explicit"):
        a, b, c = (BashOperator(name, "true") for name in "abc")
        b.set_upstream(a)
        b.set_downstream([c])
    assert b.upstream_task_ids == {"a"} and b.downstream_task_ids == {"c"}


def test_linking_a_dagless_task_pulls_it_into_the_dag():
    dag = DAG("pull")
    inside = BashOperator("inside", "true", dag=dag)
    loose = BashOperator("loose", "true")
    inside >> loose
    assert loose.dag is dag and dag.has_task("loose")


def test_linking_tasks_of_two_dags_is_refused():
    a = BashOperator("a", "true", dag=DAG("one"))
    b = BashOperator("b", "true", dag=DAG("two"))
    with pytest.raises(DagDefinitionError, match="'one'.*'two'"):
        a >> b


def test_cycle_is_refused_when_the_closing_edge_is_added():
    with DAG("loopy"):
        a, b, c = (BashOperator(name, "true") for name in "abc")
        a >> b >> c
        with pytest.raises(DagCycleError) as info:
            c >> a
    error = info.value
    assert error.dag_id == "loopy"
    assert error.cycle == ["c", "a", "b", "c"]
    assert "'loopy'" in str(error) and "c >> a >> b >> c" in str(error)
    assert a.upstream_task_ids == set()  # the bad edge was not added


def test_self_loop_is_a_cycle():
    with DAG("selfish"):
        a = BashOperator("a", "true")
        with pytest.raises(DagCycleError, match="a >> a"):
            a >> a


def test_validate_finds_a_cycle_built_behind_the_api():
    with DAG("sneaky") as dag:
        a, b = BashOperator("a", "true"), BashOperator("b", "true")
        a >> b
    b._downstream["a"] = a  # what a buggy custom operator could do
    a._upstream["b"] = b
    with pytest.raises(DagCycleError) as info:
        dag.validate()
    assert set(info.value.cycle) == {"a", "b"} and "'sneaky'" in str(info.value)
    with pytest.raises(DagCycleError):
        dag.topological_sort()


def test_duplicate_task_id_names_the_dag_and_the_task():
    with DAG("dupes"):
        BashOperator("same", "true")
        with pytest.raises(DuplicateTaskIdError, match="'dupes'.*'same'"):
            BashOperator("same", "false")


@pytest.mark.parametrize("bad", ["*/5 * * *", "61 * * * *", "every tuesday-ish", "@fortnightly", "* * * * * *"])
def test_bad_schedule_names_the_dag_and_the_string(bad):
    with pytest.raises(DagDefinitionError) as info:
        DAG("cronned", schedule=bad)
    assert "'cronned'" in str(info.value) and repr(bad) in str(info.value)


@pytest.mark.parametrize("good", ["*/5 * * * *", "0 3 * * 1-5", "@once", "@hourly", "@daily",
                                  "@weekly", "@monthly", "@yearly", timedelta(minutes=10)])
def test_valid_schedules_are_kept(good):
    dag = DAG("ok", schedule=good, start_date=datetime(2024, 1, 1))
    assert dag.schedule == good
    dag.validate()


def test_schedule_interval_is_an_alias_and_both_at_once_is_an_error():
    assert DAG("alias", schedule_interval="@daily").schedule == "@daily"
    with pytest.raises(DagDefinitionError, match="either schedule or schedule_interval"):
        DAG("both", schedule="@daily", schedule_interval="@hourly")


def test_scheduled_dag_without_start_date_fails_validation():
    with pytest.raises(DagDefinitionError, match="'nostart'.*start_date"):
        DAG("nostart", schedule="@daily").validate()
    DAG("manual").validate()  # unscheduled DAGs need none


@pytest.mark.parametrize("bad", ["has space", "", "x" * 251, "slash/es", "ünïcode"])
def test_bad_dag_ids_are_refused(bad):
    with pytest.raises(DagDefinitionError, match="dag_id"):
        DAG(bad)


@pytest.mark.parametrize("bad", ["has space", "", "semi;colon"])
def test_bad_task_ids_name_the_dag(bad):
    with DAG("ids"):
        with pytest.raises(DagDefinitionError, match="'ids'.*task_id"):
            BashOperator(bad, "true")


def test_default_args_fill_operator_settings_and_explicit_values_win():
    args = {"retries": 3, "queue": "kubernetes", "retry_delay": 30, "pool": "big",
            "owner": "ignored-airflow-key", "execution_timeout": timedelta(minutes=2)}
    with DAG("defaults", default_args=args):
        inherited = BashOperator("inherited", "true")
        explicit = BashOperator("explicit", "true", retries=0, queue="default",
                                default_args={"pool_slots": 2})
    assert inherited.retries == 3 and inherited.queue == "kubernetes" and inherited.pool == "big"
    assert inherited.retry_delay == timedelta(seconds=30)
    assert inherited.execution_timeout == timedelta(minutes=2)
    assert explicit.retries == 0 and explicit.queue == "default" and explicit.pool_slots == 2


def test_builtin_defaults_and_configured_default_queue(monkeypatch):
    from crossdock.configuration import conf

    monkeypatch.setenv("CROSSDOCK__CORE__DEFAULT_QUEUE", "fallback_q")
    conf.reload()
    op = BashOperator("t", "true", dag=DAG("d"))
    assert op.queue == "fallback_q"
    assert (op.pool, op.pool_slots, op.priority_weight, op.weight_rule) == ("default_pool", 1, 1, "downstream")
    assert op.retries == 0 and op.retry_delay == timedelta(seconds=300)
    assert op.execution_timeout is None and op.trigger_rule == "all_success"


def test_dag_defaults_come_from_config_and_default_args_start_date(monkeypatch):
    from crossdock.configuration import conf

    monkeypatch.setenv("CROSSDOCK__CORE__MAX_ACTIVE_RUNS_PER_DAG", "3")
    conf.reload()
    dag = DAG("cfg", default_args={"start_date": datetime(2024, 5, 1)})
    assert dag.max_active_runs == 3
    assert dag.start_date == datetime(2024, 5, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("kwargs, message", [
    ({"retries": -1}, "retries"),
    ({"retry_delay": "5 minutes"}, "retry_delay"),
    ({"execution_timeout": -3}, "execution_timeout"),
    ({"pool_slots": 0}, "pool_slots"),
    ({"weight_rule": "sideways"}, "weight_rule"),
    ({"trigger_rule": "sometimes"}, "trigger_rule"),
    ({"executor_config": ["not", "a", "dict"]}, "executor_config"),
])
def test_bad_operator_settings_name_the_task(kwargs, message):
    with DAG("settings"):
        with pytest.raises(DagDefinitionError, match=f"'settings', task 't'.*{message}"):
            BashOperator("t", "true", **kwargs)


def test_priority_weight_total_per_weight_rule():
    with DAG("weights"):
        a = BashOperator("a", "true", priority_weight=1)
        b = BashOperator("b", "true", priority_weight=2)
        c = BashOperator("c", "true", priority_weight=4)
        d = BashOperator("d", "true", priority_weight=8)
        a >> [b, c] >> d  # diamond: d reachable twice from a, counted once
        up = BashOperator("up", "true", priority_weight=16, weight_rule="upstream")
        d >> up
        absolute = BashOperator("absolute", "true", priority_weight=5, weight_rule="absolute")
        a >> absolute
    assert a.priority_weight_total == 1 + 2 + 4 + 8 + 16 + 5
    assert b.priority_weight_total == 2 + 8 + 16
    assert d.priority_weight_total == 8 + 16
    assert up.priority_weight_total == 16 + 8 + 4 + 2 + 1
    assert absolute.priority_weight_total == 5


def test_get_task_of_an_unknown_id_raises_a_readable_key_error():
    dag = DAG("finder")
    with pytest.raises(TaskNotFound) as info:
        dag.get_task("ghost")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "DAG 'finder' has no task 'ghost'"


def test_naive_start_date_is_utc_and_aware_is_converted():
    naive = DAG("naive", start_date=datetime(2024, 1, 1, 12))
    assert naive.start_date == datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    plus_two = timezone(timedelta(hours=2))
    aware = DAG("aware", start_date=datetime(2024, 1, 1, 12, tzinfo=plus_two))
    assert aware.start_date == datetime(2024, 1, 1, 10, tzinfo=timezone.utc)


def test_fileloc_is_the_file_that_created_the_dag():
    assert DAG("here").fileloc == __file__


def test_task_decorator_creates_python_tasks_and_numbers_reuse():
    with DAG("decorated") as dag:
        @task
        def step():
            return "done"

        @task(queue="kubernetes", retries=2)
        def heavy(x, y=0):
            return x + y

        first, second, third = step(), step(), step()
        h = heavy(1, y=2)
        first >> h
    assert dag.task_ids == ["step", "step__1", "step__2", "heavy"]
    # A call returns the XComArg of the task's return value (Airflow's TaskFlow API).
    assert isinstance(second, XComArg) and isinstance(second.operator, PythonOperator)
    assert third.python_callable is step.function
    assert h.queue == "kubernetes" and h.retries == 2
    assert h.execute({}) == 3
    assert h.upstream_task_ids == {"step"}
    assert task.python is task


def test_task_decorator_override_sets_the_task_id():
    with DAG("override") as dag:
        @task
        def work():
            pass

        work.override(task_id="custom")()
    assert dag.task_ids == ["custom"]


def test_passing_a_task_result_links_the_tasks_and_passing_the_task_itself_is_explained():
    with DAG("taskflow") as dag:
        @task
        def extract():
            return 1

        @task
        def load(value):
            return value

        load(extract())
        assert dag.get_task("load").upstream_task_ids == {"extract"}
        with pytest.raises(DagDefinitionError, match=r"pass extract\.output"):
            load(dag.get_task("extract"))


def test_base_operator_execute_must_be_implemented():
    op = BaseOperator("abstract", dag=DAG("base"))
    with pytest.raises(NotImplementedError):
        op.execute({})


def test_errors_survive_pickling_with_their_message():
    import pickle

    from crossdock.dag import DagFileError, DagNotFound

    errors = [DagCycleError("d", ["a", "b", "a"]), DuplicateTaskIdError("d", "t"),
              TaskNotFound("d", "t"), DagNotFound("d", "DAG 'd' not found"), DagFileError("/x.py", "boom")]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
