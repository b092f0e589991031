"""A ledger DAG and a set of scheduler processes a fault test can kill, pause and restart.

Every task appends ``task_id try_number`` to a ledger file when it has done its work;
the ledger, not the scheduler's records, proves each task ran to success once.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from process_helpers import process_gone, wait_for

LEDGER_DAG = """
    import os, time
    from crossdock import DAG, PythonOperator

    LEDGER = {ledger!r}

    def work(**context):
        time.sleep({seconds})
        line = f"{{context['ti'].task_id}} {{context['ti'].try_number}}\\n"
        fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    with DAG({dag_id!r}, max_active_tasks={width}) as dag:
        previous = []
        for layer in range({layers}):
            current = [PythonOperator(task_id=f"t{{layer:02d}}_{{i:02d}}", python_callable=work,
                                      **({{"queue": "kubernetes"}} if i < {pods_per_layer} else {{}}))
                       for i in range({width})]
            for upstream in previous:
                upstream >> current
            previous = current
"""


def write_ledger_dag(folder: Path, *, dag_id: str, ledger: Path, layers: int, width: int,
                     seconds: float, pods_per_layer: int = 0) -> list[str]:
    """A DAG of ``layers`` x ``width`` tasks, each layer after the whole previous one.

    :param pods_per_layer: that many tasks of each layer go to the ``kubernetes`` queue
        (a pod each under the hybrid executor); the others to the default Celery queue.
    """
    (folder / f"{dag_id}.py").write_text(textwrap.dedent(LEDGER_DAG.format(
        ledger=str(ledger), seconds=seconds, dag_id=dag_id, layers=layers, width=width,
        pods_per_layer=pods_per_layer)))
    return [f"t{layer:02d}_{i:02d}" for layer in range(layers) for i in range(width)]


def ledger_counts(ledger: Path) -> collections.Counter:
    if not ledger.exists():
        return collections.Counter()
    return collections.Counter(line.split()[0] for line in ledger.read_text().splitlines() if line.strip())


def crossdock(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crossdock.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


class SchedulerFleet:
    """``crossdock scheduler`` processes on one metadata database, each with its own log file."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    def start(self, *, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start one more scheduler; ``env`` overrides the fleet's environment for it alone."""
        log = open(self.log_dir / f"scheduler-{len(self.processes)}.log", "wb")
        process = subprocess.Popen([sys.executable, "-m", "crossdock.cli.main", "scheduler"],
                                   env={**self.env, **(env or {})},
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.processes if p.poll() is None]

    def stop_all(self) -> None:
        for process in self.alive():
            os.kill(process.pid, signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.log_dir.glob("scheduler-*.log")))


def active_scheduler(env: dict[str, str]) -> dict | None:
    """The job row ``crossdock jobs list`` shows as active, or None."""
    result = crossdock(env, "jobs", "list", "--running", "-o", "json")
    if result.returncode != 0:
        return None
    active = [row for row in json.loads(result.stdout) if row["role"] == "active"]
    return active[0] if active else None


#: Seconds between looks at the metadata database while a test waits on the fleet.
POLL_SECONDS = 0.05


def _active_here() -> dict | None:
    """The row ``crossdock jobs list`` would show as active, read by this process.

    Waits poll this way, not by running the command again and again: an interpreter
    start per look takes a core's worth of CPU from the schedulers under test on a
    two-core machine. What a wait returns is still confirmed by the command itself.
    This process's configuration must name the fleet's metadata database.
    """
    from crossdock.cli.jobs_command import job_rows

    try:
        rows = job_rows(only_running=True)
    except Exception:  # noqa: BLE001 - a busy SQLite file or a failing server: look again
        return None
    active = [row for row in rows if row["role"] == "active"]
    return active[0] if active else None


def wait_for_new_active(env: dict[str, str], *, previous_id: int | None, limit: float) -> dict | None:
    """The active job other than ``previous_id`` as ``crossdock jobs list`` shows it, or None after ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        row = _active_here()
        if row is not None and row["id"] != previous_id:
            shown = active_scheduler(env)
            if shown is not None and shown["id"] != previous_id:
                return shown
        if time.monotonic() > deadline:
            return None
        time.sleep(POLL_SECONDS)


def kill_hard(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), limit=10)


def run_state(env: dict[str, str], dag_id: str, run_id: str) -> str:
    result = crossdock(env, "dags", "state", dag_id, run_id)
    return result.stdout.strip().splitlines()[-1] if result.returncode == 0 and result.stdout.strip() else ""


def _run_state_here(dag_id: str, run_id: str) -> str:
    """The run's state as ``crossdock dags state`` would print it, read by this process (see :func:`_active_here`)."""
    from sqlalchemy import select

    from crossdock.database import create_session
    from crossdock.models import DagRun

    try:
        with create_session() as session:
            return session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)) or ""
    except Exception:  # noqa: BLE001 - a busy SQLite file or a failing server: look again
        return ""


def wait_for_run_end(env: dict[str, str], dag_id: str, run_id: str, *, limit: float) -> str:
    """The run's final state as ``crossdock dags state`` prints it, or its last state after ``limit`` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if _run_state_here(dag_id, run_id) in ("success", "failed"):
            state = run_state(env, dag_id, run_id)
            if state in ("success", "failed"):
                return state
        time.sleep(POLL_SECONDS)
    return run_state(env, dag_id, run_id)
