"""The CLI as a user runs it, on the LocalExecutor and SQLite: each test is a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

COMMAND_TIMEOUT = 120


def crossdock(home: Path, *args: str, env: dict | None = None, timeout: float = COMMAND_TIMEOUT,
              check: bool = False) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDOCK__")}
    full_env["CROSSDOCK_HOME"] = str(home)
    full_env["CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"  # the tests trigger what they write
    full_env.update(env or {})
    result = subprocess.run([sys.executable, "-m", "crossdock", *args], capture_output=True, text=True,
                            env=full_env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"crossdock {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def write_dag(home: Path, name: str, source: str) -> Path:
    folder = home / "dags"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


GOOD_DAG = """
    import os, signal, time
    from crossdock import DAG, BashOperator, PythonOperator, task

    def boom():
        raise ValueError("boom from the task")

    def kill_self():
        os.kill(os.getpid(), signal.SIGKILL)

    with DAG("good") as dag:
        hello = BashOperator(task_id="hello", bash_command="echo hello-from-bash")

        @task
        def add():
            print("sum is", 2 + 3)

        hello >> add()

    with DAG("bad_tasks") as bad:
        PythonOperator(task_id="raises", python_callable=boom)
        PythonOperator(task_id="killed", python_callable=kill_self)
        BashOperator(task_id="too_slow", bash_command="sleep 30", execution_timeout=1)
"""


def run_scheduler_until(home: Path, dag_id: str, run_id: str, *, timeout: float = 60,
                        env_extra: dict | None = None) -> str:
    """Start ``crossdock scheduler`` in the background; stop it once the run has finished."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDOCK__")}
    env["CROSSDOCK_HOME"] = str(home)
    env["CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
    env.update(env_extra or {})
    scheduler = subprocess.Popen([sys.executable, "-m", "crossdock", "scheduler"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = crossdock(home, "dags", "state", dag_id, run_id).stdout.strip()
            if state in ("success", "failed"):
                return state
            assert scheduler.poll() is None, f"scheduler died: {scheduler.stderr.read()}"
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} of {dag_id} did not finish in {timeout} s")
    finally:
        scheduler.send_signal(signal.SIGTERM)
        try:
            scheduler.wait(timeout=30)
        except subprocess.TimeoutExpired:
            scheduler.kill()


def states(home: Path, dag_id: str, run_id: str) -> dict[str, dict]:
    result = crossdock(home, "tasks", "states-for-dag-run", dag_id, run_id, "-o", "json", check=True)
    return {row["task_id"]: row for row in json.loads(result.stdout)}


def test_demo_runs_every_example_to_success(tmp_path):
    result = crossdock(tmp_path, "demo", "--home", str(tmp_path / "demo-home"), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "hybrid_execution" in out and "kubernetes_task" in out and "high_memory_task" in out
    assert "KubernetesExecutor" in out and "CeleryExecutor" in out  # both halves of the hybrid ran
    assert "▶ started" in out and "✔ success" in out
    # the summary table has the promised columns
    assert all(column in out for column in ("dag_id", "task_id", "state", "queue", "executor", "try_number",
                                            "duration"))
    assert "hybrid_execution: success" in out
    # A newcomer sees crossdock's lines: no Celery banner or superuser warning, and the demo's
    # deliberately flaky task shows its reason line, not a worker's traceback.
    everything = result.stdout + result.stderr
    assert "SecurityWarning" not in everything and "-------------- [queues]" not in everything
    assert "Traceback" not in everything, everything
    assert "simulated failure on the first try" in out


def test_trigger_schedule_and_inspect_a_good_dag(crossdock_home):
    write_dag(crossdock_home, "good", GOOD_DAG)
    listing = crossdock(crossdock_home, "dags", "list", "-o", "json", check=True)
    assert {d["dag_id"] for d in json.loads(listing.stdout)} == {"good", "bad_tasks"}
    crossdock(crossdock_home, "dags", "trigger", "good", "--run-id", "r1", check=True)
    assert run_scheduler_until(crossdock_home, "good", "r1") == "success"
    rows = states(crossdock_home, "good", "r1")
    assert {t: r["state"] for t, r in rows.items()} == {"hello": "success", "add": "success"}
    assert all(r["executor"] == "LocalExecutor" and r["try_number"] == 1 for r in rows.values())
    log = crossdock(crossdock_home, "tasks", "logs", "good", "hello", "r1", check=True).stdout
    assert "hello-from-bash" in log
    log_file = crossdock_home / "logs" / "dag_id=good" / "run_id=r1" / "task_id=add" / "attempt=1.log"
    assert "sum is 5" in log_file.read_text()


def test_failing_tasks_end_failed_with_their_reason(crossdock_home):
    write_dag(crossdock_home, "good", GOOD_DAG)
    crossdock(crossdock_home, "dags", "trigger", "bad_tasks", "--run-id", "r1", check=True)
    assert run_scheduler_until(crossdock_home, "bad_tasks", "r1") == "failed"
    rows = states(crossdock_home, "bad_tasks", "r1")
    assert rows["raises"]["state"] == "failed" and "boom from the task" in rows["raises"]["failure_reason"]
    assert rows["killed"]["state"] == "failed" and "SIGKILL" in rows["killed"]["failure_reason"]
    assert rows["too_slow"]["state"] == "failed" and "execution_timeout" in rows["too_slow"]["failure_reason"]


def test_bad_dag_files_are_import_errors_and_other_dags_still_run(crossdock_home):
    write_dag(crossdock_home, "good", GOOD_DAG)
    write_dag(crossdock_home, "syntax", "from crossdock import DAG\nwith DAG('s') as dag:\n    x = = 1\n")
    write_dag(crossdock_home, "raises", "from crossdock import DAG\nraise RuntimeError('no import for you')\n")
    write_dag(crossdock_home, "hangs", "import time\nfrom crossdock import DAG\ntime.sleep(600)\n")
    write_dag(crossdock_home, "cycle", """
        from crossdock import DAG, BashOperator
        with DAG("cyclic") as dag:
            a = BashOperator(task_id="a", bash_command="true")
            b = BashOperator(task_id="b", bash_command="true")
            a >> b >> a
    """)
    write_dag(crossdock_home, "dupe", """
        from crossdock import DAG, BashOperator
        with DAG("duplicated") as dag:
            BashOperator(task_id="same", bash_command="true")
            BashOperator(task_id="same", bash_command="true")
    """)
    write_dag(crossdock_home, "cron", """
        from crossdock import DAG
        dag = DAG("bad_cron", schedule="every tuesday-ish")
    """)
    env = {"CROSSDOCK__CORE__DAGBAG_IMPORT_TIMEOUT": "1.5"}  # paid twice: the listing, the scheduler's parse
    listing = crossdock(crossdock_home, "dags", "list", "-o", "json", env=env, check=True)
    assert {d["dag_id"] for d in json.loads(listing.stdout)} == {"good", "bad_tasks"}
    errors = json.loads(crossdock(crossdock_home, "dags", "list-import-errors", "-o", "json", check=True).stdout)
    by_file = {Path(e["filename"]).name: e["error"] for e in errors}
    assert set(by_file) == {"syntax.py", "raises.py", "hangs.py", "cycle.py", "dupe.py", "cron.py"}
    assert "SyntaxError" in by_file["syntax.py"]
    assert "no import for you" in by_file["raises.py"]
    assert "timed out" in by_file["hangs.py"]
    assert "cyclic" in by_file["cycle.py"] and "a" in by_file["cycle.py"]
    assert "duplicated" in by_file["dupe.py"] and "same" in by_file["dupe.py"]
    assert "bad_cron" in by_file["cron.py"] and "every tuesday-ish" in by_file["cron.py"]
    crossdock(crossdock_home, "dags", "trigger", "good", "--run-id", "r1", check=True)
    assert run_scheduler_until(crossdock_home, "good", "r1", env_extra=env) == "success"


def test_triggering_an_unknown_dag_is_one_clear_line(crossdock_home):
    write_dag(crossdock_home, "good", GOOD_DAG)
    result = crossdock(crossdock_home, "dags", "trigger", "nope")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "crossdock: error: DAG 'nope' not found; known DAGs: bad_tasks, good"]


def test_unknown_executor_and_unreachable_database_are_one_line_errors(crossdock_home):
    result = crossdock(crossdock_home, "scheduler", env={"CROSSDOCK__CORE__EXECUTOR": "MagicExecutor"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("crossdock: error: [core] executor: unknown executor")
    result = crossdock(crossdock_home, "db", "check",
                       env={"CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN": "postgresql://x@127.0.0.1:1/none",
                            "CROSSDOCK__DATABASE__CONNECT_TIMEOUT": "2"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot use the metadata database" in lines[0] and "127.0.0.1:1" in lines[0]


def test_config_get_and_list(crossdock_home):
    (crossdock_home / "crossdock.cfg").write_text("[core]\nparallelism = 7\n")
    assert crossdock(crossdock_home, "config", "get", "core", "parallelism", check=True).stdout.strip() == "7"
    got = crossdock(crossdock_home, "config", "get", "core", "parallelism",
                    env={"CROSSDOCK__CORE__PARALLELISM": "3"}, check=True)
    assert got.stdout.strip() == "3"
    listing = crossdock(crossdock_home, "config", "list", check=True).stdout
    assert "[core]" in listing and "parallelism = 7" in listing and "default_queue = default" in listing
    bad = crossdock(crossdock_home, "config", "get", "core", "nonsense_key")
    assert bad.returncode == 1 and "[core] nonsense_key" in bad.stderr


def test_tasks_test_runs_in_the_foreground_without_a_database(crossdock_home):
    write_dag(crossdock_home, "good", GOOD_DAG)
    result = crossdock(crossdock_home, "tasks", "test", "good", "hello", check=True)
    assert "hello-from-bash" in result.stdout + result.stderr
    assert not (crossdock_home / "crossdock.db").exists()
    failing = crossdock(crossdock_home, "tasks", "test", "bad_tasks", "raises")
    assert failing.returncode == 1 and "boom from the task" in failing.stderr


@pytest.mark.parametrize("args", [["--help"], ["dags", "--help"], ["tasks", "run", "--help"],
                                  ["db", "migrate", "--help"]])
def test_help_everywhere(crossdock_home, args):
    result = crossdock(crossdock_home, *args)
    assert result.returncode == 0 and "usage:" in result.stdout


def test_scheduler_killed_mid_task_is_recovered_by_the_next_one(crossdock_home):
    """kill -9 of the scheduler: its task dies with it; the next scheduler reruns it, uncharged."""
    write_dag(crossdock_home, "slow", """
        from crossdock import DAG, BashOperator
        with DAG("slow") as dag:
            # Try 1 runs long enough to be killed mid-task; the rerun need not wait again.
            first = BashOperator(task_id="first", retries=0,
                                 bash_command="if [ {{ ti.try_number }} = 1 ]; then sleep 2; fi; echo done")
            then = BashOperator(task_id="then", bash_command="true")
            first >> then
    """)
    # The next scheduler waits for the killed one's lease to time out (60 % of the takeover
    # time): the default, 10 s, would be six seconds of waiting that prove nothing more.
    takeover = {"CROSSDOCK__SCHEDULER__STANDBY_TAKEOVER_SECONDS": "2"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDOCK__")}
    env.update(CROSSDOCK_HOME=str(crossdock_home), CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
               CROSSDOCK__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD="2",
               CROSSDOCK__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="0.5", **takeover)
    crossdock(crossdock_home, "dags", "trigger", "slow", "--run-id", "r1", check=True)
    doomed = subprocess.Popen([sys.executable, "-m", "crossdock", "scheduler"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if states(crossdock_home, "slow", "r1").get("first", {}).get("state") == "running":
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the first task never started")
    finally:
        doomed.kill()
        doomed.wait()
    assert states(crossdock_home, "slow", "r1")["first"]["state"] == "running"
    # The next scheduler starts at once; it sees the dead one's heartbeat go stale and resets its task.
    assert run_scheduler_until(crossdock_home, "slow", "r1", env_extra={
        "CROSSDOCK__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "2", **takeover}) == "success"
    rows = states(crossdock_home, "slow", "r1")
    assert rows["first"]["state"] == "success" and rows["first"]["try_number"] == 2
    assert rows["then"]["state"] == "success"
