"""Dynamic task mapping through the scheduler: literal lists, an upstream's pushed list,
partial arguments, the cross product of two lists, expand_kwargs, a mapped classic operator,
downstream tasks receiving the list of results, an empty list and the bad inputs."""

from __future__ import annotations


import pytest

from crossdock.state import TaskInstanceState as S

from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files

DAG_FILE = '''
from crossdock import DAG, BashOperator, task

LEDGER = {ledger!r}

def note(text):
    with open(LEDGER, "a") as handle:
        handle.write(text + "\\n")

with DAG("mapping", schedule=None) as dag:
    @task
    def numbers():
        return [1, 2, 3]

    @task
    def double(x, offset=0):
        note(f"double {{x}}")
        return x * 2 + offset

    @task
    def total(values):
        note(f"total {{sorted(values)}}")
        return sum(values)

    @task
    def pair(a, b):
        return f"{{a}}{{b}}"

    @task
    def greet(name, greeting):
        return f"{{greeting}} {{name}}"

    @task
    def nothing():
        return []

    @task
    def collect(values):
        note(f"collect {{values}}")

    doubled = double.partial(offset=1).expand(x=numbers())
    total(doubled)
    collect(pair.expand(a=["x", "y"], b=[1, 2]))
    greet.expand_kwargs([{{"name": "ann", "greeting": "hi"}}, {{"name": "bob", "greeting": "yo"}}])
    BashOperator.partial(task_id="echo", do_xcom_push=True).expand(bash_command=["echo one", "echo two"])
    double.override(task_id="never").expand(x=nothing())
'''


@pytest.fixture
def mapping_dag(crossdock_home, monkeypatch):
    ledger = crossdock_home / "ledger.txt"
    return use_dag_files(crossdock_home, monkeypatch, {"mapping.py": DAG_FILE.format(ledger=str(ledger))}), ledger


def test_mapped_tasks_expand_run_in_parallel_and_hand_their_results_on(mapping_dag):
    from sqlalchemy import select

    from crossdock.dag.xcom_values import deserialize_value
    from crossdock.database import create_session
    from crossdock.executors.local_executor import LocalExecutor
    from crossdock.models import TaskInstance, XCom

    folder, ledger = mapping_dag
    parse_and_trigger(folder, "mapping")
    run_scheduler(LocalExecutor(parallelism=4))
    state, _ = run_states("mapping")
    with create_session() as session:
        tis = [(ti.task_id, ti.map_index, ti.state) for ti in session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == "mapping"))]
        values = {(row.task_id, row.map_index): deserialize_value(row.value) for row in session.execute(
            select(XCom.task_id, XCom.map_index, XCom.value).where(XCom.key == "return_value"))}
    assert state == "success", tis
    assert sorted((t, i) for t, i, _ in tis if t == "double") == [("double", 0), ("double", 1), ("double", 2)]
    assert [values[("double", i)] for i in range(3)] == [3, 5, 7]
    assert values[("total", -1)] == 15
    assert [values[("pair", i)] for i in range(4)] == ["x1", "x2", "y1", "y2"]  # cross product, in order
    assert [values[("greet", i)] for i in range(2)] == ["hi ann", "yo bob"]
    assert [values[("echo", i)] for i in range(2)] == ["one", "two"]
    assert ("never", -1, S.SKIPPED) in tis  # an empty list skips the task
    lines = ledger.read_text().splitlines()
    assert sorted(line for line in lines if line.startswith("double")) == ["double 1", "double 2", "double 3"]
    assert "total [3, 5, 7]" in lines and "collect ['x1', 'x2', 'y1', 'y2']" in lines


def test_bad_expansions_fail_the_task_with_the_reason(crossdock_home, monkeypatch):
    from crossdock.dag.exceptions import DagDefinitionError
    from crossdock.executors.local_executor import LocalExecutor
    from crossdock import DAG, task

    with DAG("bad_literal"):
        @task
        def f(x):
            pass

        with pytest.raises(DagDefinitionError, match="got a dict; expand maps over a list"):
            f.expand(x={"a": 1})
        with pytest.raises(DagDefinitionError, match="needs a list or an XComArg, not int"):
            f.expand(x=3)

    folder = use_dag_files(crossdock_home, monkeypatch, {"bad_mapping.py": '''
        from crossdock import DAG, task

        with DAG("bad_mapping", schedule=None) as dag:
            @task
            def not_a_list():
                return {"a": 1}

            @task
            def too_many():
                return list(range(5))

            @task
            def broken():
                raise ValueError("no list today")

            @task
            def use(x):
                pass

            use.override(task_id="over_dict").expand(x=not_a_list())
            use.override(task_id="over_limit").expand(x=too_many())
            use.override(task_id="after_failure").expand(x=broken())
    '''},
                           CORE__MAX_MAP_LENGTH="3")
    parse_and_trigger(folder, "bad_mapping")
    run_scheduler(LocalExecutor(parallelism=4))
    state, tis = run_states("bad_mapping")
    assert state == "failed"
    assert "which is dict, not a list" in tis["over_dict"].failure_reason
    assert "would have 5 instances, over [core] max_map_length (3)" in tis["over_limit"].failure_reason
    assert tis["after_failure"].state == S.UPSTREAM_FAILED
