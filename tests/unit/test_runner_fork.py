"""Running a task command in a fork of a warm process, or in a new interpreter."""

from __future__ import annotations

import io
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from process_helpers import process_gone, wait_for
from crossdock.configuration import conf
from crossdock.runner.command import InvalidCommandError
from crossdock.runner.fork import (
    ForkResult,
    run_command_in_fork,
    run_command_in_subprocess,
    start_forked_command,
)
from crossdock.runner.task_log import task_log_path


@pytest.fixture(autouse=True)
def dags_folder_is_tmp_path(tmp_path, monkeypatch):
    """The DAG files these tests write live in tmp_path; workers run only DAG files in the DAGs folder."""
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(tmp_path))
    conf.reload()


DAG_HEADER = """\
import os, subprocess, sys, time
from crossdock import DAG, BashOperator, PythonOperator
"""




@pytest.fixture
def dag_path(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    path = tmp_path / "fork_dag.py"
    path.write_text(DAG_HEADER + textwrap.dedent(f"""
        OUT = {str(out)!r}

        def hello():
            print("hello from a forked task")

        def boom():
            raise RuntimeError("it broke")

        def wait_forever():
            open(os.path.join(OUT, "waiting"), "w").close()
            time.sleep(100)

        def list_fds():
            with open(os.path.join(OUT, "fds"), "w") as handle:
                for fd in os.listdir("/proc/self/fd"):
                    try:
                        handle.write(os.readlink(f"/proc/self/fd/{{fd}}") + "\\n")
                    except OSError:
                        pass

        with DAG("fork_dag") as dag:
            PythonOperator("hello", python_callable=hello)
            PythonOperator("boom", python_callable=boom)
            PythonOperator("wait_forever", python_callable=wait_forever)
            PythonOperator("list_fds", python_callable=list_fds)
            BashOperator("bash_wait", bash_command="echo $$ > {out}/bash.pid; sleep 100")
    """))
    return path


def command(dag_path: Path, task_id: str, run_id: str = "r1") -> list[str]:
    return ["crossdock", "tasks", "run", "fork_dag", task_id, run_id, "--try-number", "1",
            "--subdir", str(dag_path)]


def test_a_forked_task_succeeds_and_writes_its_log(dag_path, crossdock_home):
    result = run_command_in_fork(command(dag_path, "hello"))
    assert result == ForkResult(0, None, result.duration)
    assert result.duration > 0
    log = task_log_path(dag_id="fork_dag", task_id="hello", run_id="r1", try_number=1)
    assert "hello from a forked task" in log.read_text()


def test_a_forked_task_that_raises_reports_the_runner_reason(dag_path):
    result = run_command_in_fork(command(dag_path, "boom"))
    assert result.exit_code == 1
    assert result.reason == "RuntimeError: it broke"


def test_usage_failures_come_back_as_exit_code_2(dag_path):
    result = run_command_in_fork(command(dag_path, "no_such_task"))
    assert result.exit_code == 2
    assert result.reason == "DAG 'fork_dag' has no task 'no_such_task'"


@pytest.mark.parametrize("bad", [
    ["bash", "-c", "touch {marker}"],
    "crossdock tasks run fork_dag hello r1; touch {marker}",
    ["crossdock", "tasks", "run"],
])
def test_anything_but_a_task_command_is_refused_and_not_run(bad, tmp_path):
    marker = tmp_path / "ran"
    bad = [part.format(marker=marker) for part in bad] if isinstance(bad, list) else bad.format(marker=marker)
    children_before = _children()
    with pytest.raises(InvalidCommandError):
        run_command_in_fork(bad)
    with pytest.raises(InvalidCommandError):
        run_command_in_subprocess(bad)
    assert not marker.exists()
    assert _children() == children_before


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if handle.read().rsplit(")", 1)[1].split()[1] == me:
                        found.add(int(entry))
            except OSError:
                continue
    return found


def test_a_task_killed_by_sigkill_reports_the_signal(dag_path, tmp_path):
    task = start_forked_command(command(dag_path, "wait_forever"))
    assert wait_for(lambda: (tmp_path / "out" / "waiting").exists())
    assert task.poll() is None
    os.kill(task.pid, signal.SIGKILL)
    result = task.wait(timeout=30)
    assert result is not None
    assert result.exit_code == -signal.SIGKILL
    assert result.reason == "killed by signal SIGKILL"


def test_sigterm_ends_the_try_cleanly_and_stops_its_bash_group(dag_path, tmp_path, crossdock_home):
    task = start_forked_command(command(dag_path, "bash_wait"))
    pid_file = tmp_path / "out" / "bash.pid"
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    bash_pid = int(pid_file.read_text())
    os.kill(task.pid, signal.SIGTERM)  # the runner only, as `kill <pid>` would
    result = task.wait(timeout=30)
    assert result.exit_code == 1
    assert result.reason == "received SIGTERM"
    assert wait_for(lambda: process_gone(bash_pid)), "bash outlived its terminated task"
    log = task_log_path(dag_id="fork_dag", task_id="bash_wait", run_id="r1", try_number=1).read_text()
    assert "received SIGTERM" in log.splitlines()[-1]


def test_a_timeout_of_the_caller_stops_the_task(dag_path, tmp_path):
    result = run_command_in_fork(command(dag_path, "wait_forever"), timeout=1)
    assert result.exit_code == 1
    assert result.reason == "timed out after 1s; received SIGTERM"


def test_the_child_holds_none_of_the_parents_files(dag_path, tmp_path):
    secret = tmp_path / "parent-only.txt"
    with open(secret, "w") as handle:
        os.set_inheritable(handle.fileno(), True)
        result = run_command_in_fork(command(dag_path, "list_fds"))
    assert result.exit_code == 0
    targets = (tmp_path / "out" / "fds").read_text().splitlines()
    assert str(secret) not in targets
    assert any(target.endswith("attempt=1.log") for target in targets)


def test_prints_reach_the_log_even_when_the_parent_replaced_sys_stdout(dag_path, monkeypatch):
    """A Celery worker swaps sys.stdout for a logging proxy; the task's prints must still
    land in its log file, not in the parent's stream object."""
    fake = io.StringIO()
    monkeypatch.setattr(sys, "stdout", fake)
    result = run_command_in_fork(command(dag_path, "hello", run_id="proxied"))
    assert result.exit_code == 0
    log = task_log_path(dag_id="fork_dag", task_id="hello", run_id="proxied", try_number=1)
    assert "hello from a forked task" in log.read_text()
    assert fake.getvalue() == ""


def test_a_new_interpreter_runs_the_same_command(dag_path, crossdock_home):
    ok = run_command_in_subprocess(command(dag_path, "hello", run_id="spawned"))
    assert ok.exit_code == 0 and ok.reason is None
    log = task_log_path(dag_id="fork_dag", task_id="hello", run_id="spawned", try_number=1)
    assert "hello from a forked task" in log.read_text()
    failed = run_command_in_subprocess(command(dag_path, "boom", run_id="spawned"))
    assert failed.exit_code == 1
    assert failed.reason == "RuntimeError: it broke"
