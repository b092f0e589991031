"""TaskInstanceKey: the identity of one try, used as a dict key everywhere."""

from crossdock.models.taskinstancekey import TaskInstanceKey


def test_key_is_hashable_ordered_and_defaults_map_index():
    a = TaskInstanceKey("d", "t", "r", 1)
    b = TaskInstanceKey("d", "t", "r", 2)
    assert a.map_index == -1
    assert {a: 1, b: 2}[TaskInstanceKey("d", "t", "r", 1)] == 1
    assert sorted([b, a]) == [a, b]


def test_primary_drops_the_try_number_and_with_try_number_changes_it():
    key = TaskInstanceKey("d", "t", "r", 3, 2)
    assert key.primary == ("d", "t", "r", 2)
    assert key.with_try_number(4) == TaskInstanceKey("d", "t", "r", 4, 2)
    assert key.with_try_number(4).primary == key.primary
    assert key.reduced.try_number == 2
    assert TaskInstanceKey("d", "t", "r", 0).reduced.try_number == 0


def test_key_survives_a_json_round_trip():
    import json

    key = TaskInstanceKey("d", "t", "r", 3, 5)
    assert TaskInstanceKey(*json.loads(json.dumps(key))) == key


def test_a_try_record_reads_its_ids_from_its_key_only():
    from crossdock.runner.context import RuntimeTaskInstance

    key = TaskInstanceKey("d", "t", "r", 3, 2)
    ti = RuntimeTaskInstance(key, hostname="h")
    assert (ti.dag_id, ti.task_id, ti.run_id, ti.try_number, ti.map_index) == ("d", "t", "r", 3, 2)
    assert ti.key is key
    assert not {"dag_id", "task_id", "run_id", "try_number", "map_index"} & set(vars(ti))
