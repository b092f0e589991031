"""LocalExecutor: tasks as forks of a warm process, reported through the event buffer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from process_helpers import process_gone, wait_for
from crossdock.configuration import conf
from crossdock.executors.local_executor import (
    REVOKED_REASON,
    ZYGOTE_DIED_REASON,
    LocalExecutor,
)
from crossdock.models.taskinstance import TaskInstance
from crossdock.runner.command import task_run_command
from crossdock.state import TaskInstanceState


@pytest.fixture(autouse=True)
def dags_folder_is_tmp_path(tmp_path, monkeypatch):
    """The DAG files these tests write live in tmp_path; workers run only DAG files in the DAGs folder."""
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(tmp_path))
    conf.reload()


#: Upper bound for a test's wait loops: a hung executor fails the test instead of hanging it.
LIMIT_SECONDS = 60.0

DAG_TEMPLATE = """\
import os, subprocess, time
from crossdock import DAG, BashOperator, PythonOperator

OUT = {out!r}
PARALLELISM = {parallelism}
TOTAL = {total}


def concurrent(task_id):
    # Record the start, then wait until the whole batch this task belongs to has started:
    # a LocalExecutor that ran tasks one at a time would never get past this point.
    path = os.path.join(OUT, "events")
    with open(path, "a") as handle:
        handle.write(f"start {{task_id}}\\n")
    lines = open(path).read().split("\\n")
    position = [line for line in lines if line.startswith("start")].index(f"start {{task_id}}") + 1
    needed = min(TOTAL, PARALLELISM * -(-position // PARALLELISM))
    deadline = time.monotonic() + 60
    while sum(line.startswith("start") for line in open(path).read().split("\\n")) < needed:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only some of the {{needed}} tasks of this batch ever started")
        time.sleep(0.01)
    with open(path, "a") as handle:
        handle.write(f"end {{task_id}}\\n")


def boom():
    raise ValueError("boom")


def wait_forever(task_id):
    child = subprocess.Popen(["sleep", "100"])
    with open(os.path.join(OUT, f"{{task_id}}.pids"), "w") as handle:
        handle.write(f"{{os.getpid()}} {{child.pid}}")
    time.sleep(100)


def slow_then_done():
    time.sleep(1)
    open(os.path.join(OUT, "done"), "w").close()


with DAG("local_dag") as dag:
    for number in range(TOTAL):
        PythonOperator(f"c{{number}}", python_callable=concurrent, op_args=[f"c{{number}}"])
    PythonOperator("ok", python_callable=lambda: print("all good"))
    PythonOperator("boom", python_callable=boom)
    BashOperator("bash_fails", bash_command="echo failing; exit 3")
    PythonOperator("wait_forever", python_callable=wait_forever, op_args=["wait_forever"])
    PythonOperator("wait_forever_2", python_callable=wait_forever, op_args=["wait_forever_2"])
    BashOperator("bash_wait", bash_command="echo $$ > {out}/bash_wait.pid; sleep 100")
    PythonOperator("slow_then_done", python_callable=slow_then_done)
"""




class Setup:
    def __init__(self, tmp_path: Path, *, parallelism: int = 2, total: int = 5):
        self.out = tmp_path / "out"
        self.out.mkdir()
        self.dag_path = tmp_path / "local_dag.py"
        self.dag_path.write_text(DAG_TEMPLATE.format(out=str(self.out), parallelism=parallelism, total=total))

    def ti(self, task_id: str, run_id: str = "r1") -> TaskInstance:
        return TaskInstance(dag_id="local_dag", task_id=task_id, run_id=run_id, try_number=1, map_index=-1,
                            priority_weight=1, queue="default")

    def queue(self, executor: LocalExecutor, *task_ids: str) -> list[TaskInstance]:
        tis = [self.ti(task_id) for task_id in task_ids]
        for ti in tis:
            executor.queue_command(ti, task_run_command(ti.key, subdir=str(self.dag_path)))
        return tis

    def pids(self, task_id: str) -> list[int]:
        path = self.out / f"{task_id}.pids"
        wait_for(lambda: path.exists() and len(path.read_text().split()) == 2)
        return [int(value) for value in path.read_text().split()]


def run_until_final(executor: LocalExecutor, keys, *, events=None) -> dict:
    """Heartbeat like a scheduler until every key has a final event; return the events."""
    events = {} if events is None else events
    deadline = time.monotonic() + LIMIT_SECONDS
    final = {TaskInstanceState.SUCCESS, TaskInstanceState.FAILED}
    while not all(key in events and events[key][0] in final for key in keys):
        assert time.monotonic() < deadline, f"no final state within {LIMIT_SECONDS}s: {events}"
        executor.heartbeat()
        events.update(executor.get_event_buffer())
        executor.wait_for_events(0.5)
    return events


def heartbeat_until(executor: LocalExecutor, predicate) -> None:
    deadline = time.monotonic() + LIMIT_SECONDS
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        executor.heartbeat()
        executor.wait_for_events(0.2)


@pytest.fixture
def executors():
    """Every executor a test makes is terminated afterwards, whatever the test did."""
    made = []

    def make(**kwargs) -> LocalExecutor:
        kwargs.setdefault("kill_grace", 2.0)
        executor = LocalExecutor(**kwargs)
        executor.start()
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.terminate()


# -- contract attributes ----------------------------------------------------------------
def test_compatibility_attributes_and_configured_parallelism(monkeypatch):
    from crossdock.configuration import conf

    monkeypatch.setenv("CROSSDOCK__CORE__PARALLELISM", "3")
    conf.reload()
    executor = LocalExecutor()
    assert executor.parallelism == 3
    assert (executor.is_local, executor.is_single_threaded, executor.is_production,
            executor.supports_ad_hoc_ti_run, executor.serve_logs) == (True, False, False, True, True)
    assert executor.zygote_pid is None  # nothing is forked before start()
    monkeypatch.setenv("CROSSDOCK__LOCAL_EXECUTOR__FORK", "false")
    conf.reload()
    assert LocalExecutor().use_fork is False


# -- running ----------------------------------------------------------------------------
def test_runs_tasks_concurrently_but_never_more_than_parallelism(tmp_path, executors):
    setup = Setup(tmp_path, parallelism=2, total=5)
    executor = executors(parallelism=2)
    tis = setup.queue(executor, *[f"c{number}" for number in range(5)])
    events = run_until_final(executor, [ti.key for ti in tis])
    assert {events[ti.key][0] for ti in tis} == {TaskInstanceState.SUCCESS}, events

    running, most = set(), 0
    for line in (setup.out / "events").read_text().splitlines():
        kind, task_id = line.split()
        (running.add if kind == "start" else running.discard)(task_id)
        most = max(most, len(running))
    assert most == 2


def test_success_and_failure_events_carry_the_runner_reasons(tmp_path, executors):
    setup = Setup(tmp_path)
    executor = executors(parallelism=4)
    ok, boom, bash_fails, missing = setup.queue(executor, "ok", "boom", "bash_fails", "no_such_task")
    events = run_until_final(executor, [ok.key, boom.key, bash_fails.key, missing.key])
    assert events[ok.key] == (TaskInstanceState.SUCCESS, None)
    assert events[boom.key] == (TaskInstanceState.FAILED, "ValueError: boom")
    assert events[bash_fails.key] == (TaskInstanceState.FAILED, "bash command exited with code 3")
    assert events[missing.key] == (TaskInstanceState.FAILED, "DAG 'local_dag' has no task 'no_such_task'")
    assert executor.running == set()

    messages, lines = executor.get_task_log(bash_fails, 1)
    assert messages[0].startswith("reading ") and messages[0].endswith("attempt=1.log")
    assert "failing" in lines
    messages, lines = executor.get_task_log(bash_fails, 7)
    assert lines == [] and "no log file" in messages[0]


def test_a_started_task_reports_running_with_its_host_and_pid(tmp_path, executors):
    setup = Setup(tmp_path)
    executor = executors(parallelism=2)
    (ti,) = setup.queue(executor, "wait_forever")
    seen = {}

    def running_event():
        seen.update(executor.get_event_buffer())
        return ti.key in seen

    heartbeat_until(executor, running_event)
    state, info = seen[ti.key]
    assert state == TaskInstanceState.RUNNING
    assert info.endswith(f":{executor.task_pid(ti.key)}")
    assert ti.key in executor.running


def test_a_task_killed_with_sigkill_fails_with_the_signal(tmp_path, executors):
    setup = Setup(tmp_path)
    executor = executors(parallelism=2)
    (ti,) = setup.queue(executor, "wait_forever")
    heartbeat_until(executor, lambda: executor.task_pid(ti.key) is not None)
    os.kill(executor.task_pid(ti.key), signal.SIGKILL)
    events = run_until_final(executor, [ti.key])
    assert events[ti.key] == (TaskInstanceState.FAILED, "killed by signal SIGKILL")


def test_an_invalid_command_is_refused_and_never_run(tmp_path, executors):
    setup = Setup(tmp_path)
    executor = executors(parallelism=2)
    marker = tmp_path / "ran"
    ti = setup.ti("evil")
    executor.queue_command(ti, ["bash", "-c", f"touch {marker}"])
    ti2 = setup.ti("evil_string")
    executor.queue_command(ti2, f"crossdock tasks run local_dag ok r1; touch {marker}")
    events = run_until_final(executor, [ti.key, ti2.key])
    for key in (ti.key, ti2.key):
        state, reason = events[key]
        assert state == TaskInstanceState.FAILED
        assert reason.startswith("refusing to run")
    assert not marker.exists()
    assert executor.running == set()
    assert executor.task_pid(ti.key) is None


def test_end_waits_for_running_tasks_then_stops_its_process(tmp_path, executors):
    setup = Setup(tmp_path)
    executor = executors(parallelism=2)
    (ti,) = setup.queue(executor, "slow_then_done")
    heartbeat_until(executor, lambda: executor.task_pid(ti.key) is not None)
    zygote = executor.zygote_pid
    executor.end()
    assert (setup.out / "done").exists(), "end() returned before the running task finished"
    assert executor.get_event_buffer()[ti.key][0] == TaskInstanceState.SUCCESS
    assert process_gone(zygote)
    assert executor.zygote_pid is None


def test_terminate_leaves_no_process_behind(tmp_path, executors):
    setup = Setup(tmp_path)
    executor = executors(parallelism=4)
    python_ti, bash_ti = setup.queue(executor, "wait_forever", "bash_wait")
    heartbeat_until(executor, lambda: all(executor.task_pid(ti.key) for ti in (python_ti, bash_ti)))
    runner_pid, sleep_pid = setup.pids("wait_forever")
    bash_pid_file = setup.out / "bash_wait.pid"
    assert wait_for(lambda: bash_pid_file.exists() and bash_pid_file.read_text().strip())
    pids = [executor.zygote_pid, executor.task_pid(bash_ti.key), runner_pid, sleep_pid,
            int(bash_pid_file.read_text())]

    executor.terminate()

    assert all(wait_for(lambda pid=pid: process_gone(pid)) for pid in pids), \
        [pid for pid in pids if not process_gone(pid)]
    events = executor.get_event_buffer()
    assert events[python_ti.key][0] == TaskInstanceState.FAILED
    assert events[bash_ti.key][0] == TaskInstanceState.FAILED
    assert executor.running == set()


def test_revoke_fails_the_task_at_once_and_kills_its_processes(tmp_path, executors):
    setup = Setup(tmp_path)
    executor = executors(parallelism=2)
    (ti,) = setup.queue(executor, "wait_forever")
    heartbeat_until(executor, lambda: executor.task_pid(ti.key) is not None)
    runner_pid, sleep_pid = setup.pids("wait_forever")
    executor.get_event_buffer()

    executor.revoke_task(ti=ti)

    assert executor.get_event_buffer() == {ti.key: (TaskInstanceState.FAILED, REVOKED_REASON)}
    assert ti.key not in executor.running
    assert wait_for(lambda: process_gone(runner_pid) and process_gone(sleep_pid))
    # The process's own end is not reported a second time.
    heartbeat_until(executor, lambda: executor.task_pid(ti.key) is None and not executor._in_flight)
    executor.heartbeat()
    assert ti.key not in executor.get_event_buffer()


def test_a_dead_executor_process_fails_its_tasks_and_is_replaced(tmp_path, executors):
    setup = Setup(tmp_path)
    executor = executors(parallelism=2)
    (ti,) = setup.queue(executor, "wait_forever")
    heartbeat_until(executor, lambda: executor.task_pid(ti.key) is not None)
    runner_pid, sleep_pid = setup.pids("wait_forever")
    old_zygote = executor.zygote_pid

    os.kill(old_zygote, signal.SIGKILL)

    events = run_until_final(executor, [ti.key])
    assert events[ti.key] == (TaskInstanceState.FAILED, ZYGOTE_DIED_REASON)
    assert wait_for(lambda: process_gone(runner_pid) and process_gone(sleep_pid)), \
        "a task of the dead executor process kept running"
    assert executor.zygote_pid not in (None, old_zygote)
    (again,) = setup.queue(executor, "ok")
    assert run_until_final(executor, [again.key])[again.key] == (TaskInstanceState.SUCCESS, None)


def test_tasks_die_with_a_scheduler_that_dies(tmp_path):
    """The owner process is killed outright; its executor's tasks must not run on unwatched."""
    setup = Setup(tmp_path)
    script = textwrap.dedent(f"""
        import os, sys, time
        from crossdock.executors.local_executor import LocalExecutor
        from crossdock.models.taskinstancekey import TaskInstanceKey
        from crossdock.runner.command import task_run_command
        executor = LocalExecutor(parallelism=2)
        executor.start()
        key = TaskInstanceKey("local_dag", "wait_forever", "r1", 1)
        executor.execute_async(key, task_run_command(key, subdir={str(setup.dag_path)!r}))
        while executor.task_pid(key) is None:
            executor.wait_for_events(1)
            executor.sync()
        print(executor.zygote_pid, flush=True)
        while not os.path.exists({str(setup.out / "wait_forever.pids")!r}):
            time.sleep(0.02)
        os.kill(os.getpid(), 9)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=LIMIT_SECONDS)
    assert done.returncode == -signal.SIGKILL, done.stderr
    zygote = int(done.stdout.split()[0])
    runner_pid, sleep_pid = setup.pids("wait_forever")
    assert all(wait_for(lambda pid=pid: process_gone(pid)) for pid in (zygote, runner_pid, sleep_pid))


def test_new_interpreter_mode_reports_the_same_outcomes(tmp_path, executors):
    setup = Setup(tmp_path)
    executor = executors(parallelism=2, fork=False)
    ok, boom = setup.queue(executor, "ok", "boom")
    events = run_until_final(executor, [ok.key, boom.key])
    assert events[ok.key] == (TaskInstanceState.SUCCESS, None)
    assert events[boom.key] == (TaskInstanceState.FAILED, "ValueError: boom")


def test_stuck_queued_cleanup_and_adoption(tmp_path, executors):
    setup = Setup(tmp_path)
    executor = executors(parallelism=1)
    running, waiting = setup.queue(executor, "wait_forever", "ok")
    executor.heartbeat()  # one slot: only the first starts
    assert waiting.key in executor.queued_tasks
    lines = executor.cleanup_stuck_queued_tasks([running, waiting, setup.ti("unknown")])
    assert len(lines) == 3 and all(isinstance(line, str) and line for line in lines)
    assert waiting.key not in executor.queued_tasks
    assert executor.get_event_buffer()[running.key] == (TaskInstanceState.FAILED, REVOKED_REASON)
    tis = [setup.ti("a"), setup.ti("b")]
    assert list(executor.try_adopt_task_instances(tis)) == tis


def test_a_revoked_try_queued_again_runs_after_its_old_process_is_gone(tmp_path, executors):
    setup = Setup(tmp_path)
    executor = executors(parallelism=2)
    (ti,) = setup.queue(executor, "slow_then_done")
    heartbeat_until(executor, lambda: executor.task_pid(ti.key) is not None)
    old_pid = executor.task_pid(ti.key)
    executor.revoke_task(ti=ti)
    assert executor.get_event_buffer()[ti.key] == (TaskInstanceState.FAILED, REVOKED_REASON)

    executor.queue_command(ti, task_run_command(ti.key, subdir=str(setup.dag_path)))
    events = run_until_final(executor, [ti.key])
    assert events[ti.key] == (TaskInstanceState.SUCCESS, None)
    assert (setup.out / "done").exists()
    assert process_gone(old_pid)


def test_a_local_executor_does_not_support_pickling_as_airflows_does_not():
    assert LocalExecutor.supports_pickling is False
