"""The task command: what an executor builds is what the runner reads back."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import (
    InvalidCommandError,
    TaskCommand,
    UsageError,
    parse_task_command,
    task_run_command,
)

DATE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize("key, subdir, logical_date", [
    (TaskInstanceKey("d", "t", "manual__2026-01-02T03:04:05+00:00", 1), None, None),
    (TaskInstanceKey("my.dag", "a-task", "custom run", 12, 3), "DAGS_FOLDER/a/b.py", DATE),
    (TaskInstanceKey("d", "t", "r", 0), "/abs/dag.py", datetime(2026, 1, 2, 3, 4, 5)),  # naive: UTC
])
def test_what_is_built_parses_back_to_the_same_try(key, subdir, logical_date):
    command = task_run_command(key, subdir=subdir, logical_date=logical_date)
    parsed = parse_task_command(command)
    assert parsed.key == key
    assert parsed.subdir == subdir
    assert parsed.logical_date == (DATE if logical_date else None)
    assert parsed == TaskCommand(key, subdir, parsed.logical_date)
    assert (parsed.dag_id, parsed.task_id, parsed.run_id, parsed.try_number, parsed.map_index) == key


def test_a_command_without_the_logical_date_is_unchanged_from_before_the_option():
    key = TaskInstanceKey("d", "t", "r", 2)
    assert task_run_command(key, subdir="DAGS_FOLDER/x.py") == [
        "crossdock", "tasks", "run", "d", "t", "r", "--try-number", "2", "--subdir", "DAGS_FOLDER/x.py"]


@pytest.mark.parametrize("command, error", [
    (["airflow", "tasks", "run", "d", "t", "r"], InvalidCommandError),
    ("crossdock tasks run d t r", InvalidCommandError),
    (["crossdock", "tasks", "run", "d", "t"], UsageError),
    (["crossdock", "tasks", "run", "d", "t", "r", "--help"], UsageError),
    (["crossdock", "tasks", "run", "d", "t", "r", "--try-number", "-1"], UsageError),
    (["crossdock", "tasks", "run", "d", "t", "r", "--logical-date", "yesterday"], UsageError),
])
def test_what_is_not_a_try_does_not_parse(command, error, capsys):
    with pytest.raises(error):
        parse_task_command(command)
    assert capsys.readouterr().out == ""  # a --help is refused, not answered


def test_the_runner_prefers_the_commands_logical_date_and_falls_back_to_the_run_id():
    from crossdock.runner.task_runner import _parse

    custom = task_run_command(TaskInstanceKey("d", "t", "custom", 1), logical_date=DATE)
    assert _parse(custom[3:], test=False).logical_date == DATE
    old_style = task_run_command(TaskInstanceKey("d", "t", "scheduled__2024-05-06T00:00:00+00:00", 1))
    assert _parse(old_style[3:], test=False).logical_date == datetime(2024, 5, 6, tzinfo=timezone.utc)
    assert _parse(["d", "t", "custom"], test=False).logical_date is None


def test_a_signed_command_with_its_logical_date_still_verifies(monkeypatch):
    from crossdock.configuration import conf
    from crossdock.executors import celery_app  # noqa: F401 - declares [celery] task_signing_key
    from crossdock.executors.task_signing import SIGNATURE_KWARG, SignatureError, signature_kwargs, verify

    monkeypatch.setenv("CROSSDOCK__CELERY__TASK_SIGNING_KEY", "s3cret")
    conf.reload()
    command = task_run_command(TaskInstanceKey("d", "t", "r", 1), subdir="DAGS_FOLDER/d.py", logical_date=DATE)
    signature = signature_kwargs("celery-id", command)[SIGNATURE_KWARG]
    verify("celery-id", command, signature)
    with pytest.raises(SignatureError):
        verify("celery-id", [*command[:-1], "2026-01-03T00:00:00+00:00"], signature)
