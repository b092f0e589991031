"""``crossdock standalone`` autoscales its local Celery workers, as a user runs it.

The embedded defaults (serverless broker, SQLite): a queue with ``min_workers 0`` has no
worker until a task waits on it, gets workers while it has work and none once it is
quiet; the printed line says which queues are autoscaled and between which bounds. With
``[worker_queues] autoscale = False`` standalone starts the one fixed worker it always
did. A bad ``[worker_queues]`` entry stops it at once with one line.
"""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from process_helpers import process_gone, wait_for
from test_standalone_lifecycle import Command

#: Seconds a run on freshly started workers may take.
RUN_TIMEOUT = 60

DAG = textwrap.dedent("""
    from crossdock import DAG, task

    with DAG("quiet_queue", schedule=None) as dag:
        @task(queue="burst")
        def work(i):
            return i

        work.expand(i=[1, 2, 3, 4])
""")


def _environment(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDOCK__")}
    env.pop("KUBECONFIG", None)
    env.pop("CROSSDOCK_CONFIG", None)
    dags = home / "dags"
    dags.mkdir(exist_ok=True)
    (dags / "quiet_queue.py").write_text(DAG, encoding="utf-8")
    env.update(CROSSDOCK_HOME=str(home), CROSSDOCK__CORE__EXECUTOR="CeleryExecutor",
               CROSSDOCK__CORE__DAGS_FOLDER=str(dags), CROSSDOCK__METRICS__PORT="0",
               CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION="False")
    env.update({f"CROSSDOCK__{key}": value for key, value in settings.items()})
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crossdock", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _stop(standalone: Command) -> None:
    pids = standalone.descendants()
    standalone.process.send_signal(signal.SIGINT)
    assert standalone.process.wait(timeout=60) == 0, standalone.output
    assert wait_for(lambda: all(process_gone(pid) for pid in pids), limit=30)


def test_a_quiet_queue_scales_from_zero_to_its_max_and_back(crossdock_home):
    env = _environment(crossdock_home, WORKER_QUEUES__QUEUES=json.dumps(
        {"burst": {"min_workers": 0, "max_workers": 2, "max_tasks_per_worker": 2}}),
        WORKER_QUEUES__INTERVAL="0.5", WORKER_QUEUES__COOLDOWN="1")
    standalone = Command(["standalone"], env)
    try:
        standalone.wait_for_line("crossdock standalone is running")
        assert ("autoscaling local celery workers every 0.5 s (cool-down 1 s, queues a DAG adds later on the "
                "defaults): burst 0-2 workers x 2 processes, default 1-10 workers x ") in standalone.output
        assert "burst.w" not in standalone.output  # no worker for a queue nothing waits on
        assert _cli(env, "dags", "trigger", "quiet_queue", "--run-id", "r1").returncode == 0
        assert wait_for(lambda: _cli(env, "dags", "state", "quiet_queue", "r1").stdout.strip() == "success",
                        limit=RUN_TIMEOUT), standalone.output
        first = standalone.wait_for_line("autoscaler: queue burst 0 -> ")
        assert "per worker) = " in first and first.rstrip().endswith("[local]"), first
        assert "-> 2 workers (ceil((" in standalone.output  # 4 tasks, 2 per worker
        # Back to zero, in one step or two (a refresh that began before the run ended still
        # counts its last tasks).
        assert wait_for(lambda: re.search(r"autoscaler: queue burst [12] -> 0 workers", standalone.output),
                        limit=RUN_TIMEOUT), standalone.output
        _stop(standalone)
    finally:
        if standalone.process.poll() is None:
            standalone.kill_everything_left(standalone.descendants())


def test_with_autoscale_set_off_standalone_starts_its_one_fixed_worker(crossdock_home):
    env = _environment(crossdock_home, WORKER_QUEUES__AUTOSCALE="False")
    standalone = Command(["standalone"], env)
    try:
        standalone.wait_for_line("crossdock standalone is running")
        assert "consuming burst, default" in standalone.wait_for_line("celery worker (")
        assert "autoscaling" not in standalone.output
        _stop(standalone)
    finally:
        if standalone.process.poll() is None:
            standalone.kill_everything_left(standalone.descendants())


@pytest.mark.parametrize("entry, message", [
    ({"min_workers": 3, "max_workers": 1},
     "[worker_queues] queue 'burst': min_workers (3) is more than max_workers (1)"),
    ({"max_tasks_per_worker": 0}, "[worker_queues] queue 'burst': max_tasks_per_worker must be at least 1, got 0"),
    ({"max_tasks_per_worker": -2}, "[worker_queues] queue 'burst': max_tasks_per_worker must be at least 1, got -2"),
    ({"max_worker": 2}, "[worker_queues] queue 'burst': unknown key(s) max_worker; known: "),
])
def test_a_bad_worker_queue_entry_stops_standalone_with_one_line(crossdock_home, entry, message):
    done = _cli(_environment(crossdock_home, WORKER_QUEUES__QUEUES=json.dumps({"burst": entry})), "standalone")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"crossdock: error: {message}"), done.stderr
    assert "crossdock standalone is running" not in done.stdout
