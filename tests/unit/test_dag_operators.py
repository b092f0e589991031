"""What operators do when the runner calls execute(context)."""

import io
import os
import signal
import sys
import time
from datetime import datetime, timezone

import pytest

from crossdock import DAG, BashOperator, PythonOperator
from crossdock.dag import DagDefinitionError, TaskFailure
from crossdock.dag import bash_operator as bash_module


def make_context(task, **overrides):
    context = {"dag": task.dag, "task": task, "dag_id": task.dag_id, "task_id": task.task_id,
               "run_id": "manual__1", "try_number": 1, "map_index": -1,
               "logical_date": datetime(2024, 1, 1, tzinfo=timezone.utc), "params": {}, "ti": None}
    context.update(overrides)
    return context


def test_python_callable_without_arguments_gets_no_context():
    calls = []
    op = PythonOperator("t", lambda: calls.append("ran") or 42, dag=DAG("py"))
    assert op.execute(make_context(op)) == 42
    assert calls == ["ran"]


def test_python_callable_gets_only_the_context_keys_it_names():
    seen = {}

    def needs(run_id, try_number, extra="default"):
        seen.update(run_id=run_id, try_number=try_number, extra=extra)

    op = PythonOperator("t", needs, dag=DAG("py"))
    op.execute(make_context(op, try_number=2))
    assert seen == {"run_id": "manual__1", "try_number": 2, "extra": "default"}


def test_python_callable_with_var_keywords_gets_the_whole_context_and_op_args():
    seen = {}

    def takes_all(a, b, **context):
        seen.update(a=a, b=b, keys=set(context))

    op = PythonOperator("t", takes_all, op_args=[1], op_kwargs={"b": 2}, dag=DAG("py"))
    op.execute(make_context(op))
    assert seen["a"] == 1 and seen["b"] == 2
    assert {"dag_id", "task_id", "run_id", "try_number", "ti", "params"} <= seen["keys"]


def test_op_kwargs_win_over_context_values_of_the_same_name():
    op = PythonOperator("t", lambda run_id: run_id, op_kwargs={"run_id": "mine"}, dag=DAG("py"))
    assert op.execute(make_context(op)) == "mine"


def test_return_value_is_logged(caplog):
    op = PythonOperator("t", lambda: {"rows": 3}, dag=DAG("py"))
    with caplog.at_level("INFO", logger="crossdock.task"):
        op.execute(make_context(op))
    assert "Returned value was: {'rows': 3}" in caplog.text


def test_exception_in_callable_propagates_to_the_runner():
    def boom():
        raise ValueError("bad row")

    op = PythonOperator("t", boom, dag=DAG("py"))
    with pytest.raises(ValueError, match="bad row"):
        op.execute(make_context(op))


def test_python_operator_requires_a_callable():
    with pytest.raises(DagDefinitionError, match="'py', task 't'.*python_callable"):
        PythonOperator("t", "not callable", dag=DAG("py"))


def test_bash_output_reaches_stdout_and_context_is_in_the_environment(capfd):
    op = BashOperator("hello", 'echo "out $CROSSDOCK_CTX_DAG_ID.$CROSSDOCK_CTX_TASK_ID try $CROSSDOCK_CTX_TRY_NUMBER";'
                      ' echo err >&2', dag=DAG("bash"), do_xcom_push=False)
    assert op.execute(make_context(op, try_number=3)) is None
    captured = capfd.readouterr()
    assert "out bash.hello try 3" in captured.out
    assert "err" in captured.err


def test_bash_pushes_its_last_output_line_with_stderr_merged_as_airflow_does(capfd):
    op = BashOperator("hello", "echo first; echo last >&2", dag=DAG("bash"))
    assert op.execute(make_context(op)) == "last"
    assert capfd.readouterr().out == "first\nlast\n"
    silent = BashOperator("silent", "true", dag=DAG("bash2"))
    assert silent.execute(make_context(silent)) == ""  # pushed as "" (not None), as in Airflow


def test_bash_output_is_copied_when_stdout_is_not_a_real_file(monkeypatch):
    fake = io.StringIO()
    monkeypatch.setattr(sys, "stdout", fake)
    op = BashOperator("t", "echo copied", dag=DAG("bash"))
    op.execute(make_context(op))
    assert "copied" in fake.getvalue()


def test_bash_non_zero_exit_raises_task_failure_with_the_code():
    op = BashOperator("t", "exit 3", dag=DAG("bash"))
    with pytest.raises(TaskFailure, match="bash command exited with code 3"):
        op.execute(make_context(op))


def test_bash_env_replaces_or_extends_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_WORKER", "w")
    out = tmp_path / "env.txt"
    cmd = f'echo "${{FROM_WORKER:-unset}} $MINE $(pwd)" > {out}'
    dag = DAG("bash")
    BashOperator("extend", cmd, env={"MINE": "m"}, cwd=str(tmp_path), dag=dag).execute({})
    assert out.read_text().split() == ["w", "m", str(tmp_path)]
    BashOperator("replace", cmd, env={"MINE": "m", "PATH": os.environ["PATH"]},
                 append_env=False, dag=dag).execute({})
    assert out.read_text().split()[:2] == ["unset", "m"]


def test_bash_missing_cwd_fails_the_try():
    op = BashOperator("t", "true", cwd="/nonexistent/dir/for/sure", dag=DAG("bash"))
    with pytest.raises(TaskFailure, match="is not a directory"):
        op.execute({})


def test_bash_requires_a_command():
    with pytest.raises(DagDefinitionError, match="bash_command"):
        BashOperator("t", "   ", dag=DAG("bash"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Interrupted(Exception):
    pass


def test_interrupted_bash_command_is_killed_with_its_whole_process_group(tmp_path, monkeypatch):
    """An interrupt (as the runner's execution timeout raises) must not leave the command's children running."""
    monkeypatch.setattr(bash_module, "TERMINATE_GRACE_SECONDS", 2.0)
    pid_file = tmp_path / "child.pid"
    op = BashOperator("t", f"sleep 60 & echo $! > {pid_file}; wait", dag=DAG("bash"))

    def interrupt(_signum, _frame):
        if not pid_file.exists() or not pid_file.read_text().strip():
            signal.setitimer(signal.ITIMER_REAL, 0.1)  # not started yet: interrupt a bit later
            return
        raise Interrupted()

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Interrupted):
            op.execute({})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    child = int(pid_file.read_text())
    for _ in range(100):  # the group was signalled; give the kernel a moment to finish it
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child), "the background child of the bash command survived"
