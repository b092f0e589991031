"""chain, cross_downstream, Label, EmptyOperator, @dag and docs: the edges, ids and errors users rely on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime

import pytest

import crossdock
from crossdock import (
    DAG, BashOperator, EmptyOperator, Label, Param, PythonOperator, TaskGroup, chain, cross_downstream, task,
)
from crossdock.dag import DagDefinitionError
from crossdock.dag.loader import load_dags_from_file
from crossdock.dag.serialization import SerializedDAG, serialize_dag


def edges(dag: DAG) -> set[tuple[str, str]]:
    return {(task.task_id, child) for task in dag.tasks for child in task.downstream_task_ids}


def empties(*names: str) -> list[EmptyOperator]:
    return [EmptyOperator(task_id=name) for name in names]


# -- chain ------------------------------------------------------------------------------
def test_chain_links_each_argument_to_the_next_and_lists_pairwise():
    with DAG("chained") as dag:
        t1, t2, t3, t4, t5, t6 = empties("t1", "t2", "t3", "t4", "t5", "t6")
        chain(t1, [t2, t3], [t4, t5], t6)
    assert edges(dag) == {("t1", "t2"), ("t1", "t3"), ("t2", "t4"), ("t3", "t5"), ("t4", "t6"), ("t5", "t6")}


def test_chain_takes_xcomargs_groups_and_labels():
    with DAG("mixed") as dag:
        @task
        def make():
            return 1

        first, second = make(), make()
        with TaskGroup("g") as group:
            empties("in_a", "in_b")
        end = EmptyOperator(task_id="end")
        chain(EmptyOperator(task_id="start"), [Label("one"), Label("two")], [first, second], group, end)
    assert edges(dag) == {("start", "make"), ("start", "make__1"),
                          ("make", "g.in_a"), ("make", "g.in_b"), ("make__1", "g.in_a"), ("make__1", "g.in_b"),
                          ("g.in_a", "end"), ("g.in_b", "end")}
    assert dag.get_edge_info("start", "make") == {"label": "one"}
    assert dag.get_edge_info("start", "make__1") == {"label": "two"}


def test_chain_of_lists_of_different_lengths_is_refused_before_any_edge():
    with DAG("uneven") as dag:
        a, b, c, d, e = empties("a", "b", "c", "d", "e")
        with pytest.raises(DagDefinitionError, match="argument 2 has 2 items and argument 3 has 3"):
            chain(a, [b, c], [d, e, a])
    assert edges(dag) == set()


@pytest.mark.parametrize("bad", ["t2", 3, None, [object()]])
def test_chain_of_something_that_is_not_a_task_names_it(bad):
    with DAG("bad_chain") as dag:
        t1 = EmptyOperator(task_id="t1")
        with pytest.raises(TypeError, match=r"chain \(argument 2\) can only take tasks"):
            chain(t1, bad)
    assert edges(dag) == set()


# -- cross_downstream -------------------------------------------------------------------
def test_cross_downstream_links_every_pair():
    with DAG("crossed") as dag:
        @task
        def source():
            return 1

        ups = [EmptyOperator(task_id="u1"), source()]
        downs = empties("d1", "d2")
        cross_downstream(ups, downs)
        cross_downstream(downs, EmptyOperator(task_id="last"))
    assert edges(dag) == {("u1", "d1"), ("u1", "d2"), ("source", "d1"), ("source", "d2"),
                          ("d1", "last"), ("d2", "last")}


def test_cross_downstream_refuses_a_single_task_or_a_bad_member():
    with DAG("bad_cross") as dag:
        a, b = empties("a", "b")
        with pytest.raises(TypeError, match="from_tasks must be a list of tasks"):
            cross_downstream(a, [b])
        with pytest.raises(TypeError, match=r"cross_downstream \(to_tasks\) can only take tasks.*'b'"):
            cross_downstream([a], [b, "b"])
    assert edges(dag) == set()


# -- Label ------------------------------------------------------------------------------
def test_a_label_links_both_sides_and_keeps_its_text_on_each_edge():
    with DAG("labelled") as dag:
        a, b, c, d = empties("a", "b", "c", "d")
        a >> Label("fan out") >> [b, c]
        [b, c] >> Label("join") >> d
    assert edges(dag) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    assert dag.get_edge_info("a", "c") == {"label": "fan out"}
    assert dag.get_edge_info("c", "d") == {"label": "join"}
    assert dag.get_edge_info("a", "d") == {}
    data = serialize_dag(dag)
    assert data["edge_info"] == {"a": {"b": {"label": "fan out"}, "c": {"label": "fan out"}},
                                 "b": {"d": {"label": "join"}}, "c": {"d": {"label": "join"}}}
    assert SerializedDAG.from_dict(data).get_edge_info("b", "d") == {"label": "join"}
    assert SerializedDAG.from_dict(data).get_edge_info("a", "d") == {}


def test_a_label_works_leftwards_with_groups_and_when_its_downstream_comes_first():
    with DAG("left") as dag:
        a, b, c = empties("a", "b", "c")
        b << Label("back") << a  # noqa: B015
        label = Label("later")
        label >> c
        a >> label
        with TaskGroup("g") as group:
            empties("x", "y")
        c >> Label("into group") >> group
    assert edges(dag) == {("a", "b"), ("a", "c"), ("c", "g.x"), ("c", "g.y")}
    assert dag.get_edge_info("a", "b") == {"label": "back"}
    assert dag.get_edge_info("a", "c") == {"label": "later"}
    assert dag.get_edge_info("c", "g.y") == {"label": "into group"}


def test_a_dag_without_labels_stores_no_edge_info():
    with DAG("unlabelled") as dag:
        a, b = empties("a", "b")
        a >> b
    assert "edge_info" not in serialize_dag(dag)
    assert SerializedDAG.from_dict(serialize_dag(dag)).edge_info == {}


@pytest.mark.parametrize("bad", ["", 5, None])
def test_a_label_needs_text(bad):
    with pytest.raises(DagDefinitionError, match="an edge label must be a non-empty string"):
        Label(bad)


def test_a_label_cannot_be_linked_to_another_label():
    with DAG("two_labels"):
        with pytest.raises(TypeError, match="Label\\('b'\\) can only be linked to tasks"):
            Label("a") >> Label("b")


# -- EmptyOperator ----------------------------------------------------------------------
def test_empty_operator_does_nothing_and_says_so_in_the_serialized_task():
    class Custom(EmptyOperator):
        def execute(self, context):
            return "work"

    class Renamed(EmptyOperator):
        pass

    with DAG("empties") as dag:
        nothing = EmptyOperator(task_id="nothing")
        Custom(task_id="custom")
        Renamed(task_id="renamed")
        BashOperator(task_id="bash", bash_command="true")
    assert nothing.execute({}) is None
    tasks = serialize_dag(dag)["tasks"]
    assert tasks["nothing"]["empty"] is True and tasks["renamed"]["empty"] is True
    assert "empty" not in tasks["custom"] and "empty" not in tasks["bash"]
    stored = SerializedDAG.from_dict(serialize_dag(dag)).tasks
    assert stored["nothing"].is_empty and not stored["custom"].is_empty and not stored["bash"].is_empty


def test_an_empty_operator_with_a_callback_needs_its_try():
    with DAG("callback"):
        hooked = EmptyOperator(task_id="hooked")
    hooked.on_success_callback = print
    assert "empty" not in serialize_dag(hooked.dag)["tasks"]["hooked"]


# -- @dag -------------------------------------------------------------------------------
def test_from_crossdock_import_dag_is_the_decorator_and_the_package_still_works():
    from crossdock import dag
    import crossdock.dag as package

    assert dag is package and callable(dag)
    assert package.DAG is DAG and package.EmptyOperator is EmptyOperator and package.chain is chain


def test_dag_with_arguments_builds_the_dag_when_called():
    from crossdock import dag

    @dag(schedule="@daily", start_date=datetime(2024, 1, 1), tags=["x"])
    def nightly():
        """Runs every night."""
        EmptyOperator(task_id="start") >> BashOperator(task_id="work", bash_command="true")

    built = nightly()
    assert isinstance(built, DAG) and built.dag_id == "nightly" and built.schedule == "@daily"
    assert built.tags == ["x"] and built.doc_md == "Runs every night."
    assert edges(built) == {("start", "work")}
    assert nightly.function.__name__ == "nightly"


def test_bare_dag_and_a_given_dag_id():
    from crossdock import dag

    @dag
    def bare():
        EmptyOperator(task_id="only")

    @dag("renamed", doc_md="given docs")
    def original():
        """Not used: doc_md was given."""

    assert bare().task_ids == ["only"] and bare().schedule is None
    built = original()
    assert built.dag_id == "renamed" and built.doc_md == "given docs"


def test_function_parameters_become_params_and_their_values_reach_the_try():
    from crossdock import dag
    from crossdock.runner.templating import render_template_fields

    @dag(params={"kept": 1, "limit": Param(5, type="integer")})
    def with_params(limit=10, name="world"):
        @task
        def greet(who, most):
            return f"{who} {most}"

        greet(name, limit)

    built = with_params(name="crossdock")
    assert built.params.dump() == {"kept": 1, "limit": 10, "name": "crossdock"}
    assert built.params.get_param("limit").schema == {"type": "integer"}  # the Param's schema stays
    greet = built.get_task("greet")
    assert greet.upstream_task_ids == set()  # a param is no task
    render_template_fields(greet, {"params": {"kept": 1, "limit": 3, "name": "run conf"}})
    assert greet.op_args == ["run conf", 3]


def test_a_dag_param_is_a_value_not_a_task():
    from crossdock import dag

    @dag
    def misuse(n=1):
        start = EmptyOperator(task_id="start")
        with pytest.raises(TypeError, match="DagParam\\('n'\\) is a value, not a task"):
            n >> start
        with pytest.raises(TypeError, match="can only take tasks"):
            chain(start, n)

    misuse()


def test_dag_decorator_errors_name_the_problem():
    from crossdock import dag

    with pytest.raises(DagDefinitionError, match="@dag got unexpected arguments 'shedule'"):
        dag(shedule="@daily")
    with pytest.raises(DagDefinitionError, match=r"\*args cannot be one"):
        @dag
        def variadic(*args):
            pass

    @dag()
    def needs(value):
        pass

    with pytest.raises(DagDefinitionError, match="@dag 'needs': missing a required argument: 'value'"):
        needs()
    assert needs(3).params.dump() == {"value": 3}


def test_a_dag_built_by_a_call_at_module_level_is_found_by_the_loader(tmp_path):
    path = tmp_path / "decorated.py"
    path.write_text(textwrap.dedent('''
        from datetime import datetime
        from crossdock import dag, EmptyOperator

        @dag(schedule=None, start_date=datetime(2024, 1, 1))
        def discarded():
            EmptyOperator(task_id="a")

        @dag
        def kept():
            EmptyOperator(task_id="b")

        discarded()
        kept_dag = kept()
    '''))
    dags = load_dags_from_file(path)
    assert sorted(dags) == ["discarded", "kept"]
    assert all(found.fileloc == str(path) for found in dags.values())
    assert dags["discarded"].task_ids == ["a"]


def test_importing_the_authoring_names_stays_light():
    code = ("import sys; from crossdock import dag, EmptyOperator, TaskGroup, task_group, Label, chain;"
            "print(','.join(m for m in ('sqlalchemy', 'celery', 'kubernetes') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# -- docs -------------------------------------------------------------------------------
def test_dag_and_task_docs_are_kept():
    with DAG("documented", description="one line", doc_md="# Title") as documented:
        op = BashOperator(task_id="t", bash_command="true", doc_md="**task**", doc="plain",
                          doc_rst="rst", doc_json="{}", doc_yaml="a: 1")
    assert (documented.description, documented.doc_md) == ("one line", "# Title")
    assert (op.doc_md, op.doc, op.doc_rst, op.doc_json, op.doc_yaml) == ("**task**", "plain", "rst", "{}", "a: 1")
    stored = SerializedDAG.from_dict(serialize_dag(documented))
    assert (stored.description, stored.doc_md) == ("one line", "# Title")
    with DAG("undocumented") as bare:
        PythonOperator(task_id="p", python_callable=print)
    assert "doc_md" not in serialize_dag(bare) and SerializedDAG.from_dict(serialize_dag(bare)).doc_md is None
    with pytest.raises(DagDefinitionError, match="DAG 'bad_doc': doc_md must be a string"):
        DAG("bad_doc", doc_md=["not", "text"])


def test_the_new_names_are_exported_from_crossdock():
    for name in ("EmptyOperator", "TaskGroup", "task_group", "Label", "chain", "cross_downstream"):
        assert name in crossdock.__all__ and getattr(crossdock, name) is not None
    assert crossdock.task_group.__module__ == "crossdock.dag.task_group" and callable(crossdock.task_group)


# -- chain_linear ------------------------------------------------------------------------
def test_chain_linear_links_every_task_of_each_argument_to_every_task_of_the_next():
    from crossdock import chain_linear

    with DAG("linear") as dag:
        t1, t2, t3, t4, t5, t6 = empties("t1", "t2", "t3", "t4", "t5", "t6")
        chain_linear(t1, [t2, t3], [t4, t5], t6)
    assert edges(dag) == {("t1", "t2"), ("t1", "t3"), ("t2", "t4"), ("t2", "t5"), ("t3", "t4"), ("t3", "t5"),
                          ("t4", "t6"), ("t5", "t6")}


def test_chain_linear_takes_lists_of_different_lengths_and_taskflow_results():
    from crossdock import chain_linear

    with DAG("linear_mixed") as dag:
        @task
        def make():
            return 1

        a, b, c = empties("a", "b", "c")
        chain_linear([a], [b, c, make()])
    assert edges(dag) == {("a", "b"), ("a", "c"), ("a", "make")}


@pytest.mark.parametrize("arguments, message", [
    ((), "no tasks given"),
    (("one",), "one argument sets no dependency"),
    (("label",), "edge labels are not supported"),
    (("text",), "can only take tasks"),
])
def test_chain_linear_refuses_what_sets_no_real_edge(arguments, message):
    from crossdock import chain_linear
    from crossdock.dag.exceptions import DagDefinitionError

    with DAG("linear_bad"):
        a, b = EmptyOperator(task_id="a"), EmptyOperator(task_id="b")
        values = {"one": ([a, b],), "label": (a, Label("x"), b), "text": (a, "b")}
        with pytest.raises((DagDefinitionError, TypeError), match=message):
            chain_linear(*(values[arguments[0]] if arguments else ()))


def test_expanding_a_task_group_fails_saying_it_is_not_provided():
    from crossdock import task_group

    with DAG("mapped_group"):
        @task_group
        def per_file(path):
            @task
            def read(path):
                return path

            read(path)

        for form in (per_file.expand, per_file.partial, per_file.expand_kwargs):
            with pytest.raises(DagDefinitionError, match="mapped task groups .* are not provided"):
                form(path=["a", "b"])
