"""Typed executor events, and the Airflow ``(state, info)`` view of the same buffer."""

from __future__ import annotations

import pytest

from crossdock.executors.base_executor import BaseExecutor
from crossdock.executors.infrastructure_loss import InfrastructureLoss, is_infrastructure_loss
from crossdock.executors.task_event import TaskEvent
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.state import TaskInstanceState as S

KEY = TaskInstanceKey("d", "t", "r", 1)


class Quiet(BaseExecutor):
    def execute_async(self, key, command, queue=None, executor_config=None):
        pass

    def sync(self):
        pass


@pytest.mark.parametrize("event, pair", [
    (TaskEvent(S.QUEUED, external_id="celery-id"), (S.QUEUED, "celery-id")),
    (TaskEvent(S.RUNNING, hostname="w1@box", pid=321), (S.RUNNING, {"hostname": "w1@box", "pid": 321})),
    (TaskEvent(S.RUNNING, hostname="pod-a"), (S.RUNNING, {"hostname": "pod-a"})),
    (TaskEvent(S.SUCCESS), (S.SUCCESS, None)),
    (TaskEvent(S.SUCCESS, hostname="w1@box", pid=7), (S.SUCCESS, {"hostname": "w1@box", "pid": 7})),
    (TaskEvent(S.FAILED, reason="ValueError: boom"), (S.FAILED, "ValueError: boom")),
    (TaskEvent(S.FAILED), (S.FAILED, None)),
])
def test_the_airflow_view_shows_the_shapes_airflow_readers_expect(event, pair):
    executor = Quiet()
    executor.report_event(KEY, event)
    assert executor.event_buffer[KEY] == pair
    assert executor.get_event_buffer() == {KEY: pair}


def test_a_lost_try_is_typed_and_still_marked_for_readers_of_the_reason():
    executor = Quiet()
    executor.report_event(KEY, TaskEvent(S.FAILED, reason="worker w1 gone", infrastructure_loss=True))
    state, info = executor.event_buffer[KEY]
    assert state == S.FAILED and info == "worker w1 gone" and is_infrastructure_loss(info)
    assert executor.pop_task_events()[KEY].infrastructure_loss


@pytest.mark.parametrize("state, info, typed", [
    (S.QUEUED, "pod-1", TaskEvent(S.QUEUED, external_id="pod-1")),
    (S.RUNNING, {"hostname": "pod-a"}, TaskEvent(S.RUNNING, hostname="pod-a")),
    (S.RUNNING, "host:42", TaskEvent(S.RUNNING, hostname="host:42")),
    (S.SUCCESS, None, TaskEvent(S.SUCCESS)),
    (S.FAILED, "boom", TaskEvent(S.FAILED, reason="boom")),
    (S.FAILED, InfrastructureLoss("gone"), TaskEvent(S.FAILED, reason="gone", infrastructure_loss=True)),
    (S.FAILED, {"reason": "gone", "infrastructure_loss": True},
     TaskEvent(S.FAILED, reason="gone", infrastructure_loss=True)),
])
def test_a_pair_written_the_airflow_way_reads_back_unchanged_in_both_views(state, info, typed):
    executor = Quiet()
    executor.event_buffer[KEY] = (state, info)
    assert executor.event_buffer[KEY] == (state, info)
    assert executor.event_buffer[KEY][1] is info
    assert executor.pop_task_events() == {KEY: typed}
    assert executor.get_event_buffer() == {}


def test_both_views_pop_the_one_buffer_and_filter_by_dag():
    executor = Quiet()
    one, two = TaskInstanceKey("one", "a", "r", 1), TaskInstanceKey("two", "b", "r", 1)
    executor.success(one)
    executor.fail(two, "boom")
    assert executor.pop_task_events(["one"]) == {one: TaskEvent(S.SUCCESS)}
    assert dict(executor.event_buffer) == {two: (S.FAILED, "boom")}
    assert executor.get_event_buffer() == {two: (S.FAILED, "boom")}
    assert executor.pop_task_events() == {}


def test_a_buffer_assigned_as_a_dict_is_read_through_both_views():
    executor = Quiet()
    executor.event_buffer = {KEY: (S.FAILED, "boom")}
    assert executor.event_buffer == {KEY: (S.FAILED, "boom")}
    assert executor.pop_task_events() == {KEY: TaskEvent(S.FAILED, reason="boom")}


def test_typed_reports_keep_in_flight_tries_running_and_end_final_ones():
    executor = Quiet()
    executor.running.add(KEY)
    executor.report_event(KEY, TaskEvent(S.RUNNING, hostname="h"))
    assert KEY in executor.running
    executor.report_event(KEY, TaskEvent(S.FAILED, reason="boom"))
    assert KEY not in executor.running
