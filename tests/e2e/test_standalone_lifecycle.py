"""``crossdock standalone`` and ``crossdock demo`` leave nothing behind, however they end.

Each test starts the command as a user would (a subprocess with its own CROSSDOCK_HOME and
the embedded defaults: serverless Celery broker, SQLite, the local pod runtime), waits
until it is up, notes every process below it from /proc, ends it, and then checks that
every one of those processes is gone: Celery workers, their pool processes and zygotes,
task tries, pod shims and the pods' processes. A SIGKILL runs no cleanup code at all, so
only ties the kernel keeps (parent-death signals, pipes that close) can pass these.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from process_helpers import process_gone, wait_for

from crossdock.processes import descendants

#: Seconds to wait for the command to come up, and for a task to start.
START_TIMEOUT = 120
#: Seconds everything it started gets to disappear after it ended.
CLEANUP_TIMEOUT = 30

#: One long try on each side of the hybrid, each running a child process of its own, so a
#: kill lands while a Celery try and a pod (with their grandchildren) are running.
LONG_TASKS_DAG = textwrap.dedent("""
    from crossdock import DAG, BashOperator

    with DAG("long_tasks", schedule=None) as dag:
        BashOperator(task_id="on_celery", bash_command="sleep 300", queue="default")
        BashOperator(task_id="in_a_pod", bash_command="sleep 300", queue="kubernetes")
""")


def _environment(home: Path, dags: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDOCK__")}
    env.pop("KUBECONFIG", None)
    env.pop("CROSSDOCK_CONFIG", None)
    env.update(CROSSDOCK_HOME=str(home), CROSSDOCK__CORE__EXECUTOR="CeleryKubernetesExecutor",
               CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",  # the tests trigger what they write
               # Any free ports: suites running side by side must not meet on 9464 and 8080.
               CROSSDOCK__METRICS__PORT="0", CROSSDOCK__WEBSERVER__PORT="0")
    if dags is not None:
        env["CROSSDOCK__CORE__DAGS_FOLDER"] = str(dags)
    return env


class Command:
    """A crossdock command running in its own session, its output collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.process = subprocess.Popen([sys.executable, "-m", "crossdock", *argv], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = START_TIMEOUT) -> str:
        def seen() -> bool:
            assert self.process.poll() is None or any(text in line for line in self.lines), \
                f"{self.process.args} exited with {self.process.returncode}:\n{self.output}"
            return any(text in line for line in self.lines)

        assert wait_for(seen, limit=timeout), f"no {text!r} after {timeout} s:\n{self.output}"
        return next(line for line in self.lines if text in line)

    def descendants(self) -> set[int]:
        return descendants(self.process.pid)

    def kill_everything_left(self, pids: set[int]) -> None:
        """Clean up after a failed test, so one failure does not leave a machine full of workers."""
        for pid in pids | {self.process.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.process.wait(timeout=10)


def _start_standalone(home: Path, dags: Path) -> Command:
    standalone = Command(["standalone"], _environment(home, dags))
    try:
        standalone.wait_for_line("crossdock standalone is running")  # printed once the workers consume
        runtime_line = standalone.wait_for_line("local pod runtime at ")
        url = runtime_line.split("local pod runtime at ", 1)[1].split()[0]
        assert _answers(url), f"the local pod runtime at {url} does not answer"
    except BaseException:
        standalone.kill_everything_left(standalone.descendants())
        raise
    return standalone


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at ``url`` (any status: the API wants a token)."""
    context = ssl.create_default_context()
    context.check_hostname = False  # its certificate is its own; answering is all that is asked here
    context.verify_mode = ssl.CERT_NONE
    try:
        urllib.request.urlopen(f"{url}/version", timeout=5, context=context).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crossdock", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _leftovers(pids: set[int]) -> dict[int, str]:
    alive = {}
    for pid in pids:
        if not process_gone(pid):
            try:
                alive[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                pass
    return alive


def _assert_all_gone(pids: set[int]) -> None:
    wait_for(lambda: not _leftovers(pids), limit=CLEANUP_TIMEOUT)
    left = _leftovers(pids)
    assert not left, f"still running {CLEANUP_TIMEOUT} s after the command ended: {left}"


def _dags_folder(home: Path) -> Path:
    folder = home / "dags"
    folder.mkdir(exist_ok=True)
    (folder / "long_tasks.py").write_text(LONG_TASKS_DAG, encoding="utf-8")
    return folder


def _sleeps_below(pids: set[int]) -> int:
    count = 0
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"300"]:
                count += 1
        except OSError:
            pass
    return count


def test_sigkill_of_standalone_mid_run_leaves_no_process(crossdock_home):
    dags = _dags_folder(crossdock_home)
    standalone = _start_standalone(crossdock_home, dags)
    env = _environment(crossdock_home, dags)
    before: set[int] = set()
    try:
        triggered = _cli(env, "dags", "trigger", "long_tasks", "--run-id", "r1")
        assert triggered.returncode == 0, triggered.stderr
        # both tries are running their `sleep`: one under a Celery zygote, one in a pod
        assert wait_for(lambda: _sleeps_below(standalone.descendants()) == 2, limit=START_TIMEOUT), \
            f"the two tries did not start:\n{standalone.output}"
        rows = json.loads(_cli(env, "tasks", "states-for-dag-run", "long_tasks", "r1", "-o", "json").stdout)
        assert {row["task_id"]: row["state"] for row in rows} == {"on_celery": "running", "in_a_pod": "running"}
        before = standalone.descendants()
        kinds = " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace") for pid in before
                         if not process_gone(pid))
        assert "celery" in kinds and "crossdock.runner.zygote" in kinds and "shim.py" in kinds, kinds

        standalone.process.send_signal(signal.SIGKILL)
        standalone.process.wait(timeout=10)
        _assert_all_gone(before)
    finally:
        if standalone.process.poll() is None or _leftovers(before):
            standalone.kill_everything_left(before)


def test_sigint_stops_standalone_and_everything_it_started(crossdock_home):
    standalone = _start_standalone(crossdock_home, _dags_folder(crossdock_home))
    before = standalone.descendants()
    try:
        assert before, "standalone started no process (no workers?)"
        started = time.monotonic()
        standalone.process.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
        code = standalone.process.wait(timeout=60)
        print(f"standalone stopped {time.monotonic() - started:.2f} s after SIGINT")
        assert code == 0, standalone.output
        _assert_all_gone(before)
    finally:
        if standalone.process.poll() is None or _leftovers(before):
            standalone.kill_everything_left(before)


def test_sigkill_of_demo_mid_run_leaves_no_process(tmp_path):
    demo = Command(["demo", "--home", str(tmp_path / "demo-home")], _environment(tmp_path / "home"))
    before: set[int] = set()
    try:
        demo.wait_for_line("▶ started")  # tries are running: workers, zygotes and pods are up
        before = demo.descendants()
        assert before, f"the demo runs no process:\n{demo.output}"
        demo.process.send_signal(signal.SIGKILL)
        demo.process.wait(timeout=10)
        _assert_all_gone(before)
    finally:
        if demo.process.poll() is None or _leftovers(before):
            demo.kill_everything_left(before)
