"""TaskGroup and @task_group: prefixed ids, edges between groups, group defaults, and the errors."""

from __future__ import annotations

import pytest

from crossdock import DAG, BashOperator, EmptyOperator, TaskGroup, task, task_group
from crossdock.dag import DagDefinitionError, DuplicateTaskIdError
from crossdock.dag.serialization import SerializedDAG, serialize_dag


def edges(dag: DAG) -> set[tuple[str, str]]:
    return {(task.task_id, child) for task in dag.tasks for child in task.downstream_task_ids}


def test_tasks_in_a_group_get_its_prefix_and_nested_groups_stack_prefixes():
    with DAG("ids") as dag:
        outside = EmptyOperator(task_id="outside")
        with TaskGroup("outer") as outer:
            first = EmptyOperator(task_id="first")
            with TaskGroup("inner") as inner:
                deep = EmptyOperator(task_id="deep")
    assert dag.task_ids == ["outside", "outer.first", "outer.inner.deep"]
    assert (outside.task_group, first.task_group, deep.task_group) == (None, outer, inner)
    assert outer.group_id == "outer" and inner.group_id == "outer.inner" and inner.label == "inner"
    assert inner.parent_group is outer and outer.parent_group is None
    assert list(outer) == [first, deep] and outer.has_task(deep) and not inner.has_task(first)
    assert outer.get_child_by_label("first") is first
    assert list(dag.task_group_dict) == ["outer", "outer.inner"]


def test_prefix_group_id_false_leaves_the_ids_of_its_tasks_alone():
    with DAG("plain_ids") as dag:
        with TaskGroup("outer", prefix_group_id=False) as outer:
            EmptyOperator(task_id="a")
            with TaskGroup("inner") as inner:
                EmptyOperator(task_id="b")
    assert dag.task_ids == ["a", "inner.b"]
    assert outer.group_id == "outer" and inner.group_id == "inner"


def test_a_group_links_from_its_leaves_and_to_its_roots():
    with DAG("links") as dag:
        start, end = EmptyOperator(task_id="start"), EmptyOperator(task_id="end")
        with TaskGroup("g1") as g1:
            a, b, c = (EmptyOperator(task_id=name) for name in "abc")
            a >> [b, c]
        with TaskGroup("g2") as g2:
            d, e = EmptyOperator(task_id="d"), EmptyOperator(task_id="e")
        returned = start >> g1 >> g2 >> end
    assert returned is end
    assert [task.task_id for task in g1.roots] == ["g1.a"]
    assert [task.task_id for task in g1.leaves] == ["g1.b", "g1.c"]
    assert edges(dag) == {("start", "g1.a"), ("g1.a", "g1.b"), ("g1.a", "g1.c"),
                          ("g1.b", "g2.d"), ("g1.b", "g2.e"), ("g1.c", "g2.d"), ("g1.c", "g2.e"),
                          ("g2.d", "end"), ("g2.e", "end")}


def test_groups_link_with_lists_and_the_left_shift_operator():
    with DAG("shift") as dag:
        x, y, z = (EmptyOperator(task_id=name) for name in "xyz")
        with TaskGroup("g") as g:
            inside = EmptyOperator(task_id="inside")
        [x, y] >> g
        g << z  # noqa: B015 - the edge is the point
        with TaskGroup("h") as h:
            EmptyOperator(task_id="after")
        [h] << g  # noqa: B015
    assert edges(dag) == {("x", "g.inside"), ("y", "g.inside"), ("z", "g.inside"), ("g.inside", "h.after")}
    assert inside.upstream_task_ids == {"x", "y", "z"}


def test_linking_a_group_before_it_has_tasks_makes_no_edge_as_in_airflow():
    with DAG("early") as dag:
        start = EmptyOperator(task_id="start")
        group = TaskGroup("later")
        start >> group
        with group:
            EmptyOperator(task_id="inside")
    assert edges(dag) == set() and dag.task_ids == ["start", "later.inside"]


def test_group_default_args_go_over_the_dags_and_under_the_operators():
    defaults = {"retries": 1, "queue": "dag_queue", "pool": "dag_pool"}
    with DAG("defaults", default_args=defaults):
        with TaskGroup("g", default_args={"retries": 2, "queue": "group_queue"}):
            with TaskGroup("inner", default_args={"retries": 3}):
                nested = BashOperator(task_id="nested", bash_command="true")
            own = BashOperator(task_id="own", bash_command="true", default_args={"queue": "task_queue"})
            given = BashOperator(task_id="given", bash_command="true", retries=0)
        outside = BashOperator(task_id="outside", bash_command="true")
    assert (nested.retries, nested.queue, nested.pool) == (3, "group_queue", "dag_pool")
    assert (own.retries, own.queue) == (2, "task_queue")
    assert given.retries == 0
    assert (outside.retries, outside.queue) == (1, "dag_queue")


def test_a_group_given_a_parent_nests_there_without_a_with_block():
    with DAG("explicit") as dag:
        parent = TaskGroup("parent", tooltip="the parent")
        child = TaskGroup("child", parent_group=parent)
        task_in_child = EmptyOperator(task_id="t", task_group=child)
    assert child.group_id == "parent.child" and child.parent_group is parent
    assert task_in_child.task_id == "parent.child.t" and parent.tooltip == "the parent"
    assert dag.task_ids == ["parent.child.t"]


def test_with_a_group_of_a_dag_outside_that_dags_block_adds_its_tasks_to_that_dag():
    dag = DAG("detached")
    with TaskGroup("g", dag=dag):
        task_ = EmptyOperator(task_id="t")
    after = EmptyOperator(task_id="after")
    assert task_.dag is dag and task_.task_id == "g.t"
    assert after.dag is None and after.task_group is None


def test_taskflow_tasks_in_a_group_get_the_prefix_and_their_own_suffix():
    with DAG("flow") as dag:
        @task
        def step():
            return 1

        with TaskGroup("g"):
            first = step()
            second = step()
        outside = step()
    assert [first.task_id, second.task_id, outside.task_id] == ["g.step", "g.step__1", "step"]
    assert dag.task_ids == ["g.step", "g.step__1", "step"]


def test_task_group_function_builds_a_group_per_call_and_forwards_what_it_returns():
    with DAG("decorated") as dag:
        @task
        def load(value):
            return value

        @task_group
        def section(value):
            """Loads one value."""
            return load(value)

        @task_group(tooltip="no return value", default_args={"retries": 4})
        def quiet():
            BashOperator(task_id="noop", bash_command="true")

        start = EmptyOperator(task_id="start")
        first, second = section(1), section(2)
        group = quiet()
        start >> first  # the returned XComArg: start links to its task only
        second >> group
    assert first.task_id == "section.load" and second.task_id == "section__1.load"
    assert isinstance(group, TaskGroup) and group.group_id == "quiet"
    assert dag.task_group_dict["section"].tooltip == "Loads one value."
    assert dag.get_task("quiet.noop").retries == 4
    assert edges(dag) == {("start", "section.load"), ("section__1.load", "quiet.noop")}


def test_task_group_function_override_and_misspelt_arguments():
    with DAG("override") as dag:
        @task_group
        def part():
            EmptyOperator(task_id="x")

        part.override(group_id="renamed", prefix_group_id=False)()
    assert dag.task_ids == ["x"] and list(dag.task_group_dict) == ["renamed"]
    with pytest.raises(DagDefinitionError, match="@task_group got unexpected arguments 'tooltp'"):
        task_group(tooltp="typo")


def test_a_second_group_with_the_same_id_is_an_error_naming_it():
    with DAG("dupes"):
        TaskGroup("g")
        with pytest.raises(DagDefinitionError, match="DAG 'dupes' already has a task group or task with id 'g'"):
            TaskGroup("g")
        with TaskGroup("outer"):
            TaskGroup("g")  # outer.g: another id
            with pytest.raises(DagDefinitionError, match="id 'outer.g'"):
                TaskGroup("g")
        assert TaskGroup("g", add_suffix_on_collision=True).group_id == "g__1"


def test_group_ids_and_task_ids_may_not_collide():
    with DAG("collide") as dag:
        EmptyOperator(task_id="taken")
        with pytest.raises(DagDefinitionError, match="task group or task with id 'taken'"):
            TaskGroup("taken")
        TaskGroup("group")
        with pytest.raises(DagDefinitionError, match="task_id 'group' is already the group_id of a task group"):
            EmptyOperator(task_id="group")
        with TaskGroup("g"):
            EmptyOperator(task_id="t")
            with pytest.raises(DuplicateTaskIdError, match="task_id 'g.t'"):
                EmptyOperator(task_id="t")
    assert dag.task_ids == ["taken", "g.t"]


def test_a_group_outside_any_dag_is_an_error():
    with pytest.raises(DagDefinitionError, match="task group 'lonely' is not part of a DAG"):
        TaskGroup("lonely")

    @task_group
    def floating():
        pass

    with pytest.raises(DagDefinitionError, match="task group 'floating' is not part of a DAG"):
        floating()


@pytest.mark.parametrize("bad", ["with.dot", "", "sp ace", 7, None, "x" * 201])
def test_a_group_id_that_cannot_prefix_task_ids_is_refused(bad):
    with DAG("bad_ids"):
        with pytest.raises(DagDefinitionError, match="group_id .* is invalid"):
            TaskGroup(bad)


def test_groups_and_tasks_of_different_dags_do_not_mix():
    with DAG("one") as one:
        group = TaskGroup("g")
    with DAG("two"):
        with pytest.raises(DagDefinitionError, match="task group 'g' belongs to DAG 'one', not to DAG 'two'"):
            EmptyOperator(task_id="t", task_group=group)
        with pytest.raises(DagDefinitionError, match="cannot be nested in group 'g' of DAG 'one'"):
            TaskGroup("child", parent_group=group, dag=DAG("three"))
    with pytest.raises(DagDefinitionError, match="task_group must be a TaskGroup"):
        EmptyOperator(task_id="t", dag=one, task_group="g")
    with one, group:
        with pytest.raises(DagDefinitionError, match="task 't': dag must be a DAG, not str"):
            EmptyOperator(task_id="t", dag="one")
    assert one.task_ids == []


def test_a_failed_with_block_does_not_leave_its_group_open():
    with DAG("failing") as dag:
        with pytest.raises(RuntimeError):
            with TaskGroup("g"):
                raise RuntimeError("inside the group")
        after = EmptyOperator(task_id="after")
    assert after.task_id == "after" and after.task_group is None and dag.task_ids == ["after"]


def test_the_serialized_dag_keeps_the_group_structure_only_when_there_are_groups():
    with DAG("drawn") as dag:
        EmptyOperator(task_id="start")
        with TaskGroup("outer", tooltip="Outer tasks", ui_color="#fff"):
            EmptyOperator(task_id="a")
            with TaskGroup("inner"):
                EmptyOperator(task_id="b")
    data = serialize_dag(dag)
    assert data["task_groups"] == {
        "outer": {"label": "outer", "tooltip": "Outer tasks", "ui_color": "#fff",
                  "tasks": ["outer.a"], "groups": ["outer.inner"]},
        "outer.inner": {"label": "inner", "parent": "outer", "tasks": ["outer.inner.b"]},
    }
    stored = SerializedDAG.from_dict(data).task_groups
    assert stored["outer.inner"].parent_group_id == "outer"
    assert stored["outer"].child_group_ids == ("outer.inner",) and stored["outer"].tooltip == "Outer tasks"
    assert stored["outer.inner"].task_ids == ("outer.inner.b",)

    with DAG("flat") as flat:
        EmptyOperator(task_id="start")
    flat_data = serialize_dag(flat)  # no key a DAG without groups did not have before
    assert "task_groups" not in flat_data and SerializedDAG.from_dict(flat_data).task_groups == {}
