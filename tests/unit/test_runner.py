"""`crossdock tasks run` / `tasks test`: one try, its log file, its exit code and reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from process_helpers import process_gone, wait_for
from crossdock.configuration import conf
from crossdock.runner.task_log import safe_path_segment, task_log_path
from crossdock.runner.task_runner import (
    EXIT_SUCCESS,
    EXIT_TASK_FAILED,
    EXIT_USAGE,
    failure_reason_from_stderr,
    run_task,
    run_task_test,
)


@pytest.fixture(autouse=True)
def dags_folder_is_tmp_path(tmp_path, monkeypatch):
    """The DAG files these tests write live in tmp_path; workers run only DAG files in the DAGs folder."""
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(tmp_path))
    conf.reload()


DAG_HEADER = """\
import json, os, signal, subprocess, sys, time
from datetime import timedelta
from crossdock import DAG, BashOperator, PythonOperator
"""


def write_dag(folder: Path, body: str, name: str = "dag_file.py") -> Path:
    path = folder / name
    path.write_text(DAG_HEADER + textwrap.dedent(body))
    return path


def last_stderr_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""




@pytest.fixture
def dag_path(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    return write_dag(tmp_path, f"""
        OUT = {str(out)!r}

        def hello(ti, params, logical_date, run_id, map_index):
            print("hello from python, try", ti.try_number)
            subprocess.run(["echo", "hello from a subprocess of python"])
            import logging
            logging.getLogger("my.task").warning("a logged warning")
            with open(os.path.join(OUT, "context.json"), "w") as handle:
                json.dump({{"ti": [ti.dag_id, ti.task_id, ti.run_id, ti.try_number, ti.map_index],
                           "params": params, "run_id": run_id, "map_index": map_index,
                           "logical_date": logical_date.isoformat() if logical_date else None}}, handle)

        def boom():
            print("about to fail")
            raise ValueError("boom")

        def leaves_a_child():
            child = subprocess.Popen(["sleep", "100"])
            with open(os.path.join(OUT, "child.pid"), "w") as handle:
                handle.write(str(child.pid))
            time.sleep(100)

        with DAG("runner_dag", params={{"color": "blue"}}) as dag:
            PythonOperator("hello", python_callable=hello)
            PythonOperator("boom", python_callable=boom)
            BashOperator("bash", bash_command="echo hello from bash; echo bash to stderr >&2")
            BashOperator("bash_fails", bash_command="exit 3")
            BashOperator("bash_timeout", execution_timeout=timedelta(seconds=2),
                         bash_command="echo $$ > {out}/bash.pid; sleep 100 & echo $! > {out}/sleep.pid; wait")
            PythonOperator("python_timeout", python_callable=leaves_a_child,
                           execution_timeout=timedelta(seconds=1))
    """)


def log_of(home: Path, dag_id: str, task_id: str, run_id: str, try_number: int, map_index: int = -1) -> Path:
    return task_log_path(dag_id=dag_id, task_id=task_id, run_id=run_id, try_number=try_number,
                         map_index=map_index, base_log_folder=home / "logs")


# -- success and the log file -----------------------------------------------------------
def test_success_writes_the_output_of_the_task_and_its_subprocesses_to_the_keyed_log(
        dag_path, crossdock_home, capfd):
    code = run_task(["runner_dag", "hello", "manual__2024-01-02T03:04:05+00:00",
                     "--try-number", "2", "--subdir", str(dag_path)])
    assert code == EXIT_SUCCESS
    expected = (crossdock_home / "logs" / "dag_id=runner_dag" / "run_id=manual__2024-01-02T03:04:05+00:00"
                / "task_id=hello" / "attempt=2.log")
    assert expected.is_file()
    text = expected.read_text()
    assert "hello from python, try 2" in text
    assert "hello from a subprocess of python" in text
    assert "a logged warning" in text
    assert "running dag_id=runner_dag task_id=hello" in text and "try_number=2" in text
    assert "pid=" in text and "host=" in text
    assert "task succeeded in" in text.splitlines()[-1]
    # Nothing leaks to the console, and no failure line is written on success.
    captured = capfd.readouterr()
    assert "hello from python" not in captured.out + captured.err
    assert failure_reason_from_stderr(captured.err) is None


def test_bash_operator_output_lands_in_the_log(dag_path, crossdock_home):
    assert run_task(["runner_dag", "bash", "r1", "--try-number", "1", "--subdir", str(dag_path)]) == 0
    text = log_of(crossdock_home, "runner_dag", "bash", "r1", 1).read_text()
    assert "hello from bash" in text
    assert "bash to stderr" in text


def test_the_task_gets_its_context_from_the_command_line(dag_path, tmp_path):
    code = run_task(["runner_dag", "hello", "manual__2024-01-02T03:04:05+00:00",
                     "--try-number", "3", "--map-index", "4", "--subdir", str(dag_path)])
    assert code == 0
    context = json.loads((tmp_path / "out" / "context.json").read_text())
    assert context["ti"] == ["runner_dag", "hello", "manual__2024-01-02T03:04:05+00:00", 3, 4]
    assert context["params"] == {"color": "blue"}
    assert context["map_index"] == 4
    assert context["logical_date"] == "2024-01-02T03:04:05+00:00"

    assert run_task(["runner_dag", "hello", "custom-run", "--logical-date", "2023-05-06",
                     "--subdir", str(dag_path)]) == 0
    context = json.loads((tmp_path / "out" / "context.json").read_text())
    assert context["logical_date"] == "2023-05-06T00:00:00+00:00"


def test_mapped_tries_get_their_own_folder_and_ids_cannot_escape_the_log_folder(dag_path, crossdock_home):
    assert run_task(["runner_dag", "hello", "r1", "--try-number", "1", "--map-index", "7",
                     "--subdir", str(dag_path)]) == 0
    assert (crossdock_home / "logs" / "dag_id=runner_dag" / "run_id=r1" / "task_id=hello" / "map_index=7"
            / "attempt=1.log").is_file()

    assert run_task(["runner_dag", "hello", "../../escape/x", "--subdir", str(dag_path)]) == 0
    logs = (crossdock_home / "logs").resolve()
    written = [path.resolve() for path in logs.rglob("*.log")]
    assert len(written) == 2
    assert all(logs in path.parents for path in written)
    assert not (crossdock_home / "escape").exists()
    assert safe_path_segment("..") == "_.."
    assert safe_path_segment("a/b c") == "a_b_c"


# -- failures ---------------------------------------------------------------------------
def test_a_raising_task_exits_1_and_the_last_stderr_line_is_its_reason(dag_path, crossdock_home, capfd):
    code = run_task(["runner_dag", "boom", "r1", "--try-number", "1", "--subdir", str(dag_path)])
    assert code == EXIT_TASK_FAILED
    err = capfd.readouterr().err
    assert last_stderr_line(err) == "crossdock: task failed: ValueError: boom"
    assert failure_reason_from_stderr(err) == "ValueError: boom"
    text = log_of(crossdock_home, "runner_dag", "boom", "r1", 1).read_text()
    assert "about to fail" in text
    assert "Traceback" in text and 'raise ValueError("boom")' in text
    assert "task failed in" in text.splitlines()[-1]
    assert text.splitlines()[-1].endswith(": ValueError: boom")


def test_a_failing_bash_command_reports_its_exit_code(dag_path, capfd):
    assert run_task(["runner_dag", "bash_fails", "r1", "--subdir", str(dag_path)]) == EXIT_TASK_FAILED
    assert failure_reason_from_stderr(capfd.readouterr().err) == "bash command exited with code 3"


def test_a_timeout_fails_the_try_and_kills_the_bash_process_group(dag_path, tmp_path, crossdock_home, capfd):
    code = run_task(["runner_dag", "bash_timeout", "r1", "--subdir", str(dag_path)])
    assert code == EXIT_TASK_FAILED
    assert last_stderr_line(capfd.readouterr().err) == "crossdock: task failed: execution_timeout of 2s exceeded"
    sleep_pid = int((tmp_path / "out" / "sleep.pid").read_text())
    bash_pid = int((tmp_path / "out" / "bash.pid").read_text())
    assert wait_for(lambda: process_gone(sleep_pid)), "the timed-out task's `sleep 100` is still running"
    assert wait_for(lambda: process_gone(bash_pid))
    assert "execution_timeout of 2s exceeded" in log_of(crossdock_home, "runner_dag", "bash_timeout", "r1", 1).read_text()


def test_a_timeout_kills_a_child_the_task_itself_left_running(dag_path, tmp_path, capfd):
    code = run_task(["runner_dag", "python_timeout", "r1", "--subdir", str(dag_path)])
    assert code == EXIT_TASK_FAILED
    assert failure_reason_from_stderr(capfd.readouterr().err) == "execution_timeout of 1s exceeded"
    child = int((tmp_path / "out" / "child.pid").read_text())
    assert wait_for(lambda: process_gone(child)), "the task's child process survived the timeout"


def test_a_dag_file_with_a_syntax_error_exits_2_with_a_reason(tmp_path, crossdock_home, capfd):
    broken = write_dag(tmp_path, "with DAG('broken') as dag:\n    PythonOperator('t', python_callable=print\n",
                       name="broken.py")
    code = run_task(["broken", "t", "r1", "--subdir", str(broken)])
    assert code == EXIT_USAGE
    reason = failure_reason_from_stderr(capfd.readouterr().err)
    assert reason is not None and "SyntaxError" in reason and "broken.py" in reason
    # The whole import error is in the try's log for the user to read.
    assert "SyntaxError" in log_of(crossdock_home, "broken", "t", "r1", 1).read_text()


def test_a_missing_dag_exits_2(dag_path, capfd):
    assert run_task(["no_such_dag", "hello", "r1", "--subdir", str(dag_path)]) == EXIT_USAGE
    reason = failure_reason_from_stderr(capfd.readouterr().err)
    assert reason is not None and "'no_such_dag'" in reason


def test_a_missing_dag_in_the_dags_folder_exits_2(tmp_path, monkeypatch, capfd):
    from crossdock.configuration import conf

    dags = tmp_path / "dags"
    dags.mkdir()
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(dags))
    conf.reload()
    assert run_task(["no_such_dag", "t", "r1"]) == EXIT_USAGE
    assert "not found" in failure_reason_from_stderr(capfd.readouterr().err)


def test_a_missing_task_exits_2(dag_path, capfd):
    assert run_task(["runner_dag", "no_such_task", "r1", "--subdir", str(dag_path)]) == EXIT_USAGE
    assert failure_reason_from_stderr(capfd.readouterr().err) == "DAG 'runner_dag' has no task 'no_such_task'"


def test_the_dags_folder_marker_in_subdir_is_the_configured_dags_folder(tmp_path, monkeypatch, dag_path):
    from crossdock.configuration import conf

    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(dag_path.parent))
    conf.reload()
    assert run_task(["runner_dag", "hello", "r1", "--subdir", f"DAGS_FOLDER/{dag_path.name}"]) == 0


@pytest.mark.parametrize("argv, fragment", [
    (["only_a_dag"], "required"),
    (["d", "t", "r", "--try-number", "x"], "invalid int value"),
    (["d", "t", "r", "--logical-date", "yesterday"], "not an ISO 8601 date"),
])
def test_bad_arguments_exit_2_without_running_anything(argv, fragment, capfd, crossdock_home):
    assert run_task(argv) == EXIT_USAGE
    reason = failure_reason_from_stderr(capfd.readouterr().err)
    assert reason is not None and reason.startswith("bad arguments:") and fragment in reason
    assert not (crossdock_home / "logs").exists()


def test_failure_reason_is_the_last_failure_line_among_any_output():
    text = ("some task output\ncrossdock: task failed: not this one\nmore\n"
            "crossdock: task log: /x\ncrossdock: task failed: ValueError: boom\n")
    assert failure_reason_from_stderr(text) == "ValueError: boom"
    assert failure_reason_from_stderr(text.encode()) == "ValueError: boom"
    assert failure_reason_from_stderr("Traceback...\nKeyError: 'x'\n") is None
    assert failure_reason_from_stderr("") is None


# -- tasks test -------------------------------------------------------------------------
def test_tasks_test_runs_in_the_foreground_without_a_log_file(dag_path, crossdock_home, capfd):
    assert run_task_test(["runner_dag", "bash", "--subdir", str(dag_path)]) == EXIT_SUCCESS
    captured = capfd.readouterr()
    assert "hello from bash" in captured.out + captured.err
    assert "run_id=test__" in captured.err and "try_number=1" in captured.err
    assert not (crossdock_home / "logs").exists()

    assert run_task_test(["runner_dag", "boom", "--subdir", str(dag_path)]) == EXIT_TASK_FAILED
    assert last_stderr_line(capfd.readouterr().err) == "crossdock: task failed: ValueError: boom"
    assert run_task_test(["runner_dag", "nope", "--subdir", str(dag_path)]) == EXIT_USAGE


# -- the metadata database stays out ----------------------------------------------------
def test_the_runner_never_imports_the_database_layer(dag_path, crossdock_home):
    """Runs the real `crossdock tasks run` entry point in a fresh interpreter and looks at
    what it imported: a task process must not need database access (principle 1)."""
    script = textwrap.dedent(f"""
        import sys
        from crossdock.cli.main import main
        code = main(["tasks", "run", "runner_dag", "hello", "r1", "--try-number", "1",
                     "--subdir", {str(dag_path)!r}])
        print("EXIT", code, "DATABASE_IMPORTED", "crossdock.database" in sys.modules)
    """)
    env = dict(os.environ, CROSSDOCK_HOME=str(crossdock_home))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert "EXIT 0 DATABASE_IMPORTED False" in done.stdout, done.stdout + done.stderr
    assert log_of(crossdock_home, "runner_dag", "hello", "r1", 1).is_file()


def test_an_unusable_log_folder_fails_the_try_with_a_reason(dag_path, tmp_path, monkeypatch, capfd):
    from crossdock.configuration import conf

    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("CROSSDOCK__LOGGING__BASE_LOG_FOLDER", str(not_a_folder))
    conf.reload()
    assert run_task(["runner_dag", "hello", "r1", "--subdir", str(dag_path)]) == EXIT_TASK_FAILED
    reason = failure_reason_from_stderr(capfd.readouterr().err)
    assert reason is not None and reason.startswith("cannot open log file")
    assert not (tmp_path / "out" / "context.json").exists()  # the task did not run unlogged


def test_a_dag_file_that_hangs_on_import_fails_after_the_import_timeout(tmp_path, monkeypatch, capfd):
    from crossdock.configuration import conf

    hanging = write_dag(tmp_path, "time.sleep(100)\nwith DAG('hangs') as dag:\n    BashOperator('t', bash_command='true')\n",
                        name="hangs.py")
    monkeypatch.setenv("CROSSDOCK__CORE__DAGBAG_IMPORT_TIMEOUT", "1")
    conf.reload()
    assert run_task(["hangs", "t", "r1", "--subdir", str(hanging)]) == EXIT_TASK_FAILED
    reason = failure_reason_from_stderr(capfd.readouterr().err)
    assert reason == "importing the DAG file took longer than 1s ([core] dagbag_import_timeout)"


def test_a_timeout_is_not_swallowed_by_the_task_catching_exception_even_off_the_main_thread():
    import threading

    from crossdock.runner.interrupt import TaskTimeout, execution_timeout

    outcome = {}

    def task_code():
        try:
            with execution_timeout(0.2):
                while True:
                    try:
                        time.sleep(0.01)
                    except Exception:  # a task that swallows its own errors
                        pass
        except TaskTimeout as exc:
            outcome["reason"] = exc.reason

    worker = threading.Thread(target=task_code)
    worker.start()
    worker.join(30)
    assert outcome == {"reason": "execution_timeout of 0.2s exceeded"}


def _argparse_namespace(argv, *, test):
    import argparse

    from crossdock.runner.command import add_task_run_arguments, add_task_test_arguments

    parser = argparse.ArgumentParser()
    (add_task_test_arguments if test else add_task_run_arguments)(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("argv, test", [
    (["d", "t", "r"], False),
    (["d", "t", "r", "--try-number", "3", "--subdir", "/x/y.py"], False),
    (["d", "t", "r", "--subdir", "DAGS_FOLDER/a.py", "--try-number", "0", "--map-index", "-1"], False),
    (["d", "t", "r", "--map-index", "7", "-S", "f.py", "--logical-date", "2026-01-01T00:00:00+00:00"], False),
    (["my.dag", "a-task", "manual__2026-01-01T00:00:00+00:00", "--try-number", "12"], False),
    (["d", "t"], True),
    (["d", "t", "--subdir", "/x", "--map-index", "2"], True),
])
def test_the_plain_command_form_is_read_exactly_as_argparse_reads_it(argv, test):
    """The runner reads the command every executor builds without building a parser; the
    result must be the one argparse gives."""
    from crossdock.runner.command import _parse_plain

    assert _parse_plain(argv, test=test) == _argparse_namespace(argv, test=test)


@pytest.mark.parametrize("argv", [
    ["d", "t", "r", "--try-number=3"],  # --option=value
    ["d", "t", "r", "--try", "3"],  # an abbreviation
    ["d", "t", "r", "--try-number", "+3"],
    ["d", "t", "r", "--try-number", "--5"],
    ["d", "t", "r", "--try-number", "1", "--try-number", "2"],  # repeated
    ["--subdir", "x.py", "d", "t", "r"],  # options first
    ["d", "t", "r", "--help"],
    ["d", "t", "r", "--subdir"],
    ["d", "t", "r", "--unknown", "1"],
    ["d", "t", "r", "extra", "1"],
])
def test_anything_but_the_plain_form_is_left_to_argparse(argv):
    from crossdock.runner.command import _parse_plain

    assert _parse_plain(argv, test=False) is None


# -- a pod's copy of the log on its stdout ----------------------------------------------
def test_in_a_pod_the_try_s_output_goes_to_stdout_too_and_the_runner_s_values_line_stays_last(
        tmp_path, crossdock_home, monkeypatch, capfd):
    """``kubectl logs`` must show what the task printed, and a line the task prints that looks
    like the runner's report must never be read as the try's values."""
    from crossdock.runner.try_values import values_from_output

    monkeypatch.setenv("CROSSDOCK__LOGGING__TASK_LOG_TO_STDOUT", "True")
    conf.reload()
    dag = write_dag(tmp_path, """
        def pretends():
            print('crossdock: task values: {"return_value": "forged"}')
            subprocess.run(["sh", "-c", "echo from a child to stderr >&2"])

        with DAG("tee_dag") as dag:
            PythonOperator("pretends", python_callable=pretends, do_xcom_push=False)
    """, name="tee_dag.py")
    assert run_task(["tee_dag", "pretends", "r1", "--try-number", "1", "--subdir", str(dag)]) == EXIT_SUCCESS
    captured = capfd.readouterr()
    in_file = log_of(crossdock_home, "tee_dag", "pretends", "r1", 1).read_text()
    for text in (in_file, captured.out):
        assert "from a child to stderr" in text and "task succeeded in" in text
    assert captured.out == in_file  # the very same bytes, in the same order
    assert values_from_output(captured.out + captured.err) == {}


def test_a_process_the_task_left_holding_its_output_does_not_hold_up_the_end_of_the_try(
        tmp_path, crossdock_home, monkeypatch, capfd):
    import crossdock.runner.task_log as task_log

    monkeypatch.setenv("CROSSDOCK__LOGGING__TASK_LOG_TO_STDOUT", "True")
    monkeypatch.setattr(task_log, "TEE_DRAIN_SECONDS", 0.2)
    conf.reload()
    out = tmp_path / "left.pid"
    dag = write_dag(tmp_path, f"""
        def leaves():
            child = subprocess.Popen(["sleep", "30"])  # inherits the try's stdout and stderr
            with open({str(out)!r}, "w") as handle:
                handle.write(str(child.pid))
            print("left one behind")

        with DAG("left_dag") as dag:
            PythonOperator("leaves", python_callable=leaves)
    """, name="left_dag.py")
    started = time.monotonic()
    try:
        assert run_task(["left_dag", "leaves", "r1", "--try-number", "1", "--subdir", str(dag)]) == EXIT_SUCCESS
        assert time.monotonic() - started < 20
        assert "left one behind" in capfd.readouterr().out
    finally:
        if out.exists():
            os.kill(int(out.read_text()), 9)
