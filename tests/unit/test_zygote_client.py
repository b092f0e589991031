"""A process that runs tries one at a time through a lean zygote of its own (a Celery pool
process does): the tries run, a dead zygote fails only the try it ran, stale settings
start a new zygote, and nothing outlives the owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from process_helpers import process_gone, wait_for
from crossdock.configuration import conf
from crossdock.runner.fork import EXIT_CHILD_CRASHED
from crossdock.runner.zygote_client import ZygoteRunner


@pytest.fixture(autouse=True)
def dags_folder_is_tmp_path(tmp_path, monkeypatch):
    """The DAG files these tests write live in tmp_path; workers run only DAG files in the DAGs folder."""
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(tmp_path))
    conf.reload()


@pytest.fixture
def dag_file(tmp_path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    path = tmp_path / "zygote_dag.py"
    path.write_text(textwrap.dedent(f"""
        import json, os, sys, time
        from crossdock import DAG, PythonOperator

        OUT = {str(out)!r}

        def report():
            with open(os.path.join(OUT, "report.json"), "w") as handle:
                json.dump({{"pid": os.getpid(), "ppid": os.getppid(),
                            "celery_loaded": "celery" in sys.modules}}, handle)

        def linger():
            with open(os.path.join(OUT, "linger.pid"), "w") as handle:
                handle.write(str(os.getpid()))
            time.sleep(60)

        with DAG("zygote_dag") as dag:
            PythonOperator(task_id="report", python_callable=report)
            PythonOperator(task_id="linger", python_callable=linger)
    """))
    return path


def command(path: Path, task_id: str, run_id: str = "r1") -> list[str]:
    return ["crossdock", "tasks", "run", "zygote_dag", task_id, run_id, "--try-number", "1",
            "--subdir", str(path)]


@pytest.fixture
def runner():
    runner = ZygoteRunner()
    yield runner
    runner.close()


def test_tries_run_in_forks_of_a_zygote_that_carries_no_celery(dag_file, runner):
    import celery  # noqa: F401 - the owner has Celery loaded, as a pool process does

    result = runner.run("k1", command(dag_file, "report"))
    assert result.exit_code == 0, result.reason
    report = json.loads((dag_file.parent / "out" / "report.json").read_text())
    assert report["ppid"] == runner.zygote_pid != os.getpid()
    assert report["celery_loaded"] is False
    # The same zygote serves the next try.
    zygote = runner.zygote_pid
    assert runner.run("k2", command(dag_file, "report", "r2")).exit_code == 0
    assert runner.zygote_pid == zygote


def test_a_zygote_killed_mid_try_fails_that_try_and_the_next_try_gets_a_new_one(dag_file, runner):
    pid_file = dag_file.parent / "out" / "linger.pid"
    runner.start()
    first_zygote = runner.zygote_pid

    def kill_zygote_once_the_try_runs():
        if wait_for(pid_file.exists):
            os.kill(first_zygote, signal.SIGKILL)

    killer = threading.Thread(target=kill_zygote_once_the_try_runs)
    killer.start()
    result = runner.run("lingering", command(dag_file, "linger"))
    killer.join()
    assert result.exit_code == EXIT_CHILD_CRASHED
    assert f"(pid {first_zygote}) died" in result.reason
    # The try's own process got SIGTERM from the kernel when its parent died.
    assert wait_for(lambda: process_gone(int(pid_file.read_text())))
    assert runner.run("after", command(dag_file, "report")).exit_code == 0
    assert runner.zygote_pid not in (None, first_zygote)


def test_a_changed_crossdock_environment_starts_a_new_zygote(dag_file, runner, monkeypatch):
    assert runner.run("a", command(dag_file, "report")).exit_code == 0
    old = runner.zygote_pid
    monkeypatch.setenv("CROSSDOCK__CORE__DAGBAG_IMPORT_TIMEOUT", "45")
    assert runner.run("b", command(dag_file, "report", "r2")).exit_code == 0
    assert runner.zygote_pid != old
    assert process_gone(old)  # the old one was let go and reaped, not left behind


def test_an_interrupted_wait_stops_the_try_and_the_next_try_is_not_confused(dag_file, runner):
    """A Celery time limit interrupts the pool process while it waits: the try must not
    keep running unwatched, and its late outcome must not be taken for the next try's."""
    pid_file = dag_file.parent / "out" / "linger.pid"

    class TimeLimit(Exception):
        pass

    def interrupt(_signum, _frame):
        raise TimeLimit()

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(TimeLimit):
            runner.run("limited", command(dag_file, "linger"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert wait_for(lambda: process_gone(int(pid_file.read_text())))
    result = runner.run("next", command(dag_file, "report"))
    assert result.exit_code == 0 and result.reason is None


def test_the_zygote_and_its_try_die_with_their_owner(dag_file, tmp_path):
    """A killed pool process (kill -9 of a worker, revoke with terminate) leaves nothing."""
    pid_file = dag_file.parent / "out" / "linger.pid"
    zygote_file = tmp_path / "zygote.pid"
    owner = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from crossdock.runner.zygote_client import ZygoteRunner
        runner = ZygoteRunner()
        runner.start()
        open({str(zygote_file)!r}, "w").write(str(runner.zygote_pid))
        runner.run("k", {command(dag_file, "linger")!r})
    """)], env=os.environ.copy())
    try:
        # Both files are written while this reads them: wait until each holds a whole pid.
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip()), "the try never started"
        assert wait_for(lambda: zygote_file.exists() and zygote_file.read_text().strip())
        zygote, task = int(zygote_file.read_text()), int(pid_file.read_text())
        owner.kill()
        owner.wait()
        assert wait_for(lambda: process_gone(zygote) and process_gone(task))
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
