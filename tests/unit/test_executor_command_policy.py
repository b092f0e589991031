"""One command policy, applied by every executor when it sends a command."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from crossdock.configuration import conf
from crossdock.executors.base_executor import BaseExecutor
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import InvalidCommandError
from crossdock.state import TaskInstanceState as S

KEY = TaskInstanceKey("d", "t", "r", 1)
COMMAND = ["crossdock", "tasks", "run", "d", "t", "r", "--try-number", "1"]


@dataclass
class FakeTI:
    key: TaskInstanceKey = KEY
    queue: str = "default"
    priority_weight: int = 1
    executor_config: dict | None = None
    external_executor_id: str | None = None


def _local():
    from crossdock.executors.local_executor import LocalExecutor

    return LocalExecutor(parallelism=2)


def _celery():
    from crossdock.executors.celery_executor import CeleryExecutor

    return CeleryExecutor(parallelism=2)


def _kubernetes():
    from kubernetes import client

    from crossdock.executors.kubernetes_executor import KubernetesExecutor

    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"
    executor = KubernetesExecutor(parallelism=2, api_client=client.ApiClient(configuration))
    executor.start = lambda: None  # no watcher: only sending is exercised
    return executor


@pytest.mark.parametrize("make", [_local, _celery, _kubernetes], ids=["local", "celery", "kubernetes"])
def test_every_executor_refuses_through_validate_command_and_frees_the_slot(make, monkeypatch):
    seen = []

    def policy(command):
        seen.append(list(command))
        raise InvalidCommandError("refusing to run it: the policy under test says no")

    monkeypatch.setattr(BaseExecutor, "validate_command", staticmethod(policy))
    executor = make()
    executor.queue_command(FakeTI(), COMMAND)
    executor.trigger_tasks(open_slots=2)
    assert seen == [COMMAND]
    assert executor.get_event_buffer() == {KEY: (S.FAILED, "refusing to run it: the policy under test says no")}
    assert not executor.running and not executor.queued_tasks and executor.slots_available == 2


def test_the_policy_follows_task_commands_only(monkeypatch):
    other = ["python", "-c", "print('mine')"]
    with pytest.raises(InvalidCommandError, match="refusing to run"):
        BaseExecutor.validate_command(other)
    monkeypatch.setenv("CROSSDOCK__CORE__TASK_COMMANDS_ONLY", "False")
    conf.reload()
    BaseExecutor.validate_command(other)
    with pytest.raises(InvalidCommandError, match="refusing to run"):
        BaseExecutor.validate_command("python -c 'a shell string'")


def test_with_task_commands_only_off_celery_sends_a_command_of_ones_own(monkeypatch):
    from test_celery_executor import sent_messages

    monkeypatch.setenv("CROSSDOCK__CORE__TASK_COMMANDS_ONLY", "False")
    conf.reload()
    executor = _celery()
    executor.queue_command(FakeTI(), ["python", "-c", "print('mine')"])
    executor.heartbeat()
    assert [command for _id, command in sent_messages()] == [["python", "-c", "print('mine')"]]
    assert KEY in executor.running
