"""``crossdock standalone`` on the hybrid, as a user runs it: one command, no servers.

It starts real Celery workers on the serverless broker and the local pod runtime, runs
the seed's hybrid DAG triggered from another terminal, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

STANDALONE_TIMEOUT = 90


def test_standalone_runs_the_seed_hybrid_dag_on_both_sides(crossdock_home):
    from crossdock.cli.demo_command import EXAMPLE_DAGS_FOLDER

    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDOCK__")}
    env.pop("KUBECONFIG", None)
    env.update(CROSSDOCK_HOME=str(crossdock_home), CROSSDOCK__CORE__EXECUTOR="CeleryKubernetesExecutor",
               CROSSDOCK__CORE__DAGS_FOLDER=str(EXAMPLE_DAGS_FOLDER),
               CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",  # triggered below without an unpause
               CROSSDOCK__METRICS__PORT="0", CROSSDOCK__WEBSERVER__PORT="0")  # suites side by side

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "crossdock", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    standalone = subprocess.Popen([sys.executable, "-m", "crossdock", "standalone"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
    try:
        assert cli("dags", "trigger", "hybrid_execution", "--run-id", "r1").returncode == 0
        deadline = time.monotonic() + STANDALONE_TIMEOUT
        state = ""
        while time.monotonic() < deadline and state not in ("success", "failed"):
            assert standalone.poll() is None, standalone.stdout.read()
            state = cli("dags", "state", "hybrid_execution", "r1").stdout.strip()
            time.sleep(0.5)
        assert state == "success"
        rows = json.loads(cli("tasks", "states-for-dag-run", "hybrid_execution", "r1", "-o", "json").stdout)
        executors = {row["task_id"]: row["executor"] for row in rows}
        assert executors == {"kubernetes_task": "KubernetesExecutor", "celery_task": "CeleryExecutor",
                             "high_memory_task": "CeleryExecutor"}
    finally:
        standalone.send_signal(signal.SIGTERM)
        try:
            output, _ = standalone.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(standalone.pid, signal.SIGKILL)
            output, _ = standalone.communicate()
    assert standalone.returncode == 0, output
    assert "celery worker" in output and "local pod runtime" in output
    # nothing of the session is left running: workers, runtime and pods stopped with it
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-s", str(standalone.pid)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left in the standalone session: {leftovers}"
