"""No code from the broker: a task command runs only a DAG file inside the DAGs folder.

Each evil DAG file here writes a marker file when imported, so "refused" is checked as
"never imported", not just as an error message. The paths every executor takes are
covered: the shared check, a fork, the LocalExecutor, the Celery worker's task (run here
with Celery's ``apply``; real worker processes on a real broker are in
tests/integration/test_worker_command_policy.py) and ``crossdock tasks run`` itself,
which is what a pod runs.
"""

from __future__ import annotations

import logging
import os
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from celery import states

from crossdock.configuration import conf
from crossdock.runner.command import (
    InvalidCommandError, check_command_allowed, is_task_command, validate_task_command,
)
from crossdock.runner.task_runner import EXIT_USAGE, run_task

GOOD_DAG = """
from crossdock import DAG, PythonOperator
with DAG("good") as dag:
    PythonOperator("t", python_callable=lambda: None)
"""


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """A DAGs folder with a good DAG, an evil file outside it, and a marker the evil file writes."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "good.py").write_text(GOOD_DAG)
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = tmp_path / "evil-ran"
    evil = outside / "evil.py"
    evil.write_text(textwrap.dedent(f"""
        open({str(marker)!r}, "a").write("imported\\n")
        from crossdock import DAG, PythonOperator
        with DAG("x") as dag:
            PythonOperator("y", python_callable=lambda: None)
    """))
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(dags))
    conf.reload()
    return dags, evil, marker


def cmd(subdir: str | None, *extra: str) -> list[str]:
    command = ["crossdock", "tasks", "run", "x", "y", "z", "--try-number", "1"]
    return command + (["--subdir", subdir] if subdir is not None else []) + list(extra)


def evil_subdirs(dags: Path, evil: Path) -> dict[str, list[str]]:
    """Every way found to name the evil file, as whole commands."""
    (dags / "link.py").symlink_to(evil)
    (dags / "linked_folder").symlink_to(evil.parent, target_is_directory=True)
    base = ["crossdock", "tasks", "run", "x", "y", "z"]
    return {
        "absolute outside": cmd(str(evil)),
        "DAGS_FOLDER traversal": cmd("DAGS_FOLDER/../outside/evil.py"),
        "absolute traversal": cmd(f"{dags}/../outside/evil.py"),
        "relative traversal": cmd(os.path.relpath(evil, dags)),
        "symlinked file in the folder": cmd("DAGS_FOLDER/link.py"),
        "symlinked folder in the folder": cmd(f"{dags}/linked_folder/evil.py"),
        "--subdir=": base + [f"--subdir={evil}"],
        "abbreviated option": base + ["--subd", str(evil)],
        "short option glued": base + [f"-S{evil}"],
        "second --subdir wins in argparse": base + ["--subdir", "DAGS_FOLDER/good.py", f"--subdir={evil}"],
        "from the user's home": cmd("~/" + os.path.relpath(evil, os.path.expanduser("~"))),
        "outside folder as a whole": cmd(str(evil.parent)),
    }


def test_dag_files_inside_the_folder_are_allowed(layout, monkeypatch):
    dags, _evil, _marker = layout
    (dags / "team").mkdir()
    (dags / "team" / "b.py").write_text(GOOD_DAG)
    (dags / "alias.py").symlink_to(dags / "team" / "b.py")  # a link that stays inside is fine
    for subdir in ("DAGS_FOLDER/good.py", str(dags / "good.py"), "DAGS_FOLDER/team/../good.py",
                   "DAGS_FOLDER/alias.py", "DAGS_FOLDER", str(dags / "team"), None):
        validate_task_command(cmd(subdir))
    monkeypatch.chdir(dags)
    validate_task_command(cmd("team/b.py"))  # relative to the working directory, like the runner


def test_a_dags_folder_reached_through_a_symlink_still_allows_its_files(tmp_path, monkeypatch):
    real = tmp_path / "real-dags"
    real.mkdir()
    (real / "a.py").write_text(GOOD_DAG)
    (tmp_path / "dags-link").symlink_to(real, target_is_directory=True)
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(tmp_path / "dags-link"))
    conf.reload()
    validate_task_command(cmd("DAGS_FOLDER/a.py"))
    validate_task_command(cmd(str(real / "a.py")))


def test_every_way_of_naming_a_file_outside_is_refused_with_a_reason(layout):
    dags, evil, marker = layout
    for name, command in evil_subdirs(dags, evil).items():
        with pytest.raises(InvalidCommandError) as refused:
            validate_task_command(command)
        message = str(refused.value)
        assert message.startswith("refusing to run"), name
        assert f"outside the DAGs folder {dags}" in message, name
        assert not is_task_command(command), name
    assert not marker.exists()


def test_the_symlink_is_named_in_the_reason(layout):
    dags, evil, _marker = layout
    evil_subdirs(dags, evil)
    with pytest.raises(InvalidCommandError, match=f"a symlink to {evil}"):
        validate_task_command(cmd("DAGS_FOLDER/link.py"))


def test_arguments_that_do_not_parse_are_refused_not_waved_through(layout):
    with pytest.raises(InvalidCommandError, match="do not parse"):
        validate_task_command(["crossdock", "tasks", "run", "x", "y", "z", "--no-such-option", "1"])
    with pytest.raises(InvalidCommandError, match="do not parse"):
        validate_task_command(["crossdock", "tasks", "run", "x", "y", "z", "--help"])


def test_example_dags_are_allowed_only_when_examples_are_loaded(layout, monkeypatch):
    from crossdock.dag.loader import EXAMPLE_DAGS_FOLDER

    example = next(str(path) for path in sorted(Path(EXAMPLE_DAGS_FOLDER).glob("*.py")))
    with pytest.raises(InvalidCommandError, match="outside the DAGs folder"):
        validate_task_command(cmd(example))
    monkeypatch.setenv("CROSSDOCK__CORE__LOAD_EXAMPLES", "True")
    conf.reload()
    validate_task_command(cmd(example))


def test_switching_task_commands_only_off_does_not_open_the_dag_file_check(layout, monkeypatch):
    dags, evil, marker = layout
    monkeypatch.setenv("CROSSDOCK__CORE__TASK_COMMANDS_ONLY", "False")
    conf.reload()
    check_command_allowed(["echo", "a command of the user's own"])
    with pytest.raises(InvalidCommandError, match="outside the DAGs folder"):
        check_command_allowed(cmd(str(evil)))


# -- every path that runs commands ------------------------------------------------------
def test_a_fork_refuses_before_importing(layout):
    from crossdock.runner.fork import start_forked_command, start_subprocess_command

    _dags, evil, marker = layout
    for start in (start_forked_command, start_subprocess_command):
        with pytest.raises(InvalidCommandError, match="outside the DAGs folder"):
            start(cmd(str(evil)))
    assert not marker.exists()


def test_the_runner_itself_refuses_what_a_pod_would_run(layout, capfd):
    """``crossdock tasks run`` is a pod's entry point: it checks the file before loading it."""
    dags, evil, marker = layout
    for name, command in evil_subdirs(dags, evil).items():
        assert run_task(command[3:]) == EXIT_USAGE, name
        last = capfd.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("crossdock: task failed: refusing to run: DAG file"), (name, last)
        assert "outside the DAGs folder" in last, name
    assert not marker.exists()


def test_the_local_executor_fails_the_try_without_importing(layout):
    from crossdock.executors.local_executor import LocalExecutor
    from crossdock.models.taskinstancekey import TaskInstanceKey
    from crossdock.state import TaskInstanceState

    _dags, evil, marker = layout
    executor = LocalExecutor(parallelism=1)
    executor.start()
    try:
        key = TaskInstanceKey("x", "y", "z", 1)
        executor.execute_async(key, cmd(str(evil)))
        deadline = time.monotonic() + 30
        events = {}
        while key not in events and time.monotonic() < deadline:
            executor.heartbeat()
            events.update(executor.get_event_buffer())
            time.sleep(0.02)
        state, reason = events[key]
        assert state == TaskInstanceState.FAILED
        assert "outside the DAGs folder" in reason
    finally:
        executor.end()
    assert not marker.exists()


def test_the_celery_task_refuses_logs_and_records_the_reason(layout, caplog):
    from crossdock.executors.celery_app import EXECUTE_COMMAND_TASK, get_celery_app

    _dags, evil, marker = layout
    app = get_celery_app()
    app.conf.task_store_eager_result = True
    task_id = str(uuid.uuid4())
    with caplog.at_level(logging.ERROR, logger="crossdock.executors.celery_worker"):
        result = app.tasks[EXECUTE_COMMAND_TASK].apply(args=[cmd(str(evil))], task_id=task_id)
    assert result.state == states.FAILURE
    assert isinstance(result.result, InvalidCommandError)
    meta = app.backend.get_task_meta(task_id)
    assert meta["status"] == states.FAILURE and "outside the DAGs folder" in str(meta["result"])
    assert any("outside the DAGs folder" in record.getMessage() and task_id in record.getMessage()
               for record in caplog.records)
    assert not marker.exists()


def test_the_scheduler_side_never_publishes_such_a_command(layout):
    """The CeleryExecutor checks too, so a bad command fails at once with the reason."""
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.models.taskinstancekey import TaskInstanceKey
    from crossdock.state import TaskInstanceState

    _dags, evil, _marker = layout
    executor = CeleryExecutor()
    key = TaskInstanceKey("x", "y", "z", 1)
    executor.execute_async(key, cmd(str(evil)))
    state, reason = executor.get_event_buffer()[key]
    assert state == TaskInstanceState.FAILED and "outside the DAGs folder" in reason
    assert key not in executor.running
