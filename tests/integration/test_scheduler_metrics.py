"""The scheduler's /metrics with real executors: the LocalExecutor's forks, Celery workers on
Redis, and ``crossdock scheduler`` as a user starts it.

Each page is fetched over HTTP from the running endpoint and parsed with prometheus-client's
parser, as Prometheus reads it. Outcome counters must match exactly what the DAG run did.
"""

from __future__ import annotations

import os
import queue as queue_module
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from crossdock.configuration import conf
from crossdock.monitoring.metrics_server import start_scheduler_metrics
from crossdock.scheduler.scheduler_job import SchedulerJob
from crossdock.state import TaskInstanceState as S
from kube_executor_support import parse_and_trigger, run_states, use_dag_files
from metrics_support import scrape
from service_gates import REDIS_URL, require_service

#: Upper bound for a scheduler run or a subprocess to answer: a hang fails instead of blocking.
WAIT_LIMIT = 60.0
#: The Redis database of this module's broker (other modules use 0-5).
REDIS_DB = 6

MIXED_DAG = """
    from crossdock import DAG, BashOperator

    with DAG("mixed") as dag:
        for i in range({ok}):
            BashOperator(task_id=f"ok{{i}}", bash_command="true", queue="{queue}")
        BashOperator(task_id="bad", bash_command="exit 3", queue="{queue}", retries=0)
"""


def run_with_metrics(executor, **start_kwargs):
    """Run the triggered DAG runs to their end with metrics on; (job, page, transitions)."""
    transitions = []
    job = SchedulerJob(executors=[executor], parse_dags=False,
                       on_state_change=lambda ti, old, new: transitions.append((ti.task_id, old, new)))
    handle = start_scheduler_metrics(job, **start_kwargs)
    deadline = time.monotonic() + WAIT_LIMIT

    def done(j) -> bool:
        assert time.monotonic() < deadline, f"DAG runs not finished after {WAIT_LIMIT} s"
        return not j.runs and j.loop_count > 1

    try:
        job.run(stop_when=done)
        handle.monitor.refresh()  # the numbers now, not those of the last background refresh
        page = scrape(handle.url)
    finally:
        handle.stop()
    return job, page, transitions


def assert_outcomes(page, transitions, *, queue: str, executor: str, ok: int) -> None:
    finished = "crossdock_task_instances_finished_total"
    labels = {"dag_id": "mixed", "queue": queue, "executor": executor}
    assert page.value(finished, state="success", **labels) == ok
    assert page.value(finished, state="failed", **labels) == 1
    assert sum(s.value for s in page.samples if s.name == finished) == ok + 1
    runs = "crossdock_task_run_duration_seconds_count"
    assert page.value(runs, queue=queue, executor=executor, state="success") == ok
    assert page.value(runs, queue=queue, executor=executor, state="failed") == 1
    # A try whose start and end reach the scheduler in one step is never seen running.
    started = sum(1 for _task, _old, new in transitions if new == S.RUNNING)
    assert (page.value("crossdock_task_queued_to_running_seconds_count", queue=queue, executor=executor)
            or 0) == started
    for state in ("scheduled", "queued", "running"):
        assert page.value("crossdock_queue_tasks", queue=queue, state=state) == 0
    assert page.value("crossdock_executor_slots", executor=executor, kind="running") == 0
    assert page.value("crossdock_executor_slots", executor=executor, kind="queued") == 0


def test_local_executor_outcomes_slots_and_queue_on_the_served_page(crossdock_home, monkeypatch):
    from crossdock.executors.executor_loader import load_executors

    folder = use_dag_files(crossdock_home, monkeypatch, {"mixed.py": MIXED_DAG.format(ok=3, queue="local_q")},
                           METRICS__ENABLED="True", SCHEDULER__MAX_LOOP_SLEEP="0.02")
    parse_and_trigger(folder, "mixed")
    job, page, transitions = run_with_metrics(load_executors("LocalExecutor")[0])
    state, tis = run_states("mixed")
    assert state == "failed" and sorted(ti.state for ti in tis.values()) == ["failed"] + ["success"] * 3
    assert_outcomes(page, transitions, queue="local_q", executor="LocalExecutor", ok=3)
    open_slots = page.value("crossdock_executor_slots", executor="LocalExecutor", kind="open")
    assert open_slots == conf.getint("core", "parallelism")
    assert page.value("crossdock_scheduler_loop_duration_seconds_count") == job.loop_count
    # the outcome lines as Prometheus' text format has them, names and all
    assert re.search(r'^crossdock_task_instances_finished_total\{dag_id="mixed",executor="LocalExecutor",'
                     r'queue="local_q",state="success"\} 3\.0$', page.text, re.M)


@pytest.mark.redis
def test_celery_run_on_redis_shows_its_queue_workers_and_free_slots(crossdock_home, monkeypatch):
    require_service("redis")
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.executors.celery_worker import start_embedded_workers

    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    folder = use_dag_files(crossdock_home, monkeypatch, {"mixed.py": MIXED_DAG.format(ok=2, queue=queue)},
                           METRICS__ENABLED="True", CORE__EXECUTOR="CeleryExecutor",
                           CELERY__BROKER_URL=f"{REDIS_URL}/{REDIS_DB}", SCHEDULER__MAX_LOOP_SLEEP="0.02",
                           WORKER_QUEUES__QUEUES=f'{{"{queue}": {{"min_workers": 0, "max_workers": 4, '
                                                 f'"max_tasks_per_worker": 2}}}}')
    parse_and_trigger(folder, "mixed")
    workers = start_embedded_workers(queues=[queue], concurrency=2, count=1)
    try:
        _job, page, transitions = run_with_metrics(CeleryExecutor())
    finally:
        workers.stop(timeout=5)
    assert_outcomes(page, transitions, queue=queue, executor="CeleryExecutor", ok=2)
    assert page.value("crossdock_queue_workers", queue=queue) == 1
    assert page.value("crossdock_queue_free_slots", queue=queue) == 2
    assert page.value("crossdock_queue_broker_messages", queue=queue) == 0
    assert page.value("crossdock_queue_desired_workers", queue=queue) == 0  # nothing left: min 0
    assert page.value("crossdock_queue_read_errors", queue=queue) == 0
    assert page.value("crossdock_publish_failures_total", executor="CeleryExecutor") == 0


# ---------------------------------------------------------------- crossdock scheduler itself
def start_scheduler(**settings: str) -> tuple[subprocess.Popen, "queue_module.Queue[str]"]:
    """``crossdock scheduler`` with this test's home and ``settings``; its stderr lines on a queue."""
    env = dict(os.environ, **{f"CROSSDOCK__{key}": value for key, value in settings.items()})
    process = subprocess.Popen([sys.executable, "-m", "crossdock", "scheduler"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue_module.Queue[str] = queue_module.Queue()

    def pump() -> None:
        for line in process.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return process, lines


def wait_for_line(lines, pattern: str) -> re.Match:
    deadline = time.monotonic() + WAIT_LIMIT
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue_module.Empty:
            continue
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}")


def test_the_scheduler_command_serves_metrics_on_loopback_only(crossdock_home, monkeypatch):
    use_dag_files(crossdock_home, monkeypatch)
    process, lines = start_scheduler(METRICS__ENABLED="True")
    try:
        match = wait_for_line(lines, r"serving Prometheus metrics on (http://127\.0\.0\.1:(\d+)/metrics)")
        url, port = match.group(1), int(match.group(2))
        assert port != 9464  # the test configuration's port 0 picked a free one
        page = scrape(url)  # up before the first loop step
        assert page.value("crossdock_executor_slots", executor="LocalExecutor", kind="open") is not None
        deadline = time.monotonic() + WAIT_LIMIT
        while not (page.value("crossdock_scheduler_loops_total")
                   and "default" in page.label_values("crossdock_queue_tasks", "queue")):
            assert time.monotonic() < deadline, page.text  # the loop runs, the monitor refreshed
            time.sleep(0.1)
            page = scrape(url)
        with pytest.raises(ConnectionRefusedError):  # bound to 127.0.0.1, not every address
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=WAIT_LIMIT)
    assert code == 0


def test_the_scheduler_command_with_the_metrics_port_taken_exits_with_one_line(crossdock_home, monkeypatch):
    use_dag_files(crossdock_home, monkeypatch)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, CROSSDOCK__METRICS__ENABLED="True", CROSSDOCK__METRICS__PORT=str(port))
        result = subprocess.run([sys.executable, "-m", "crossdock", "scheduler"], env=env, capture_output=True,
                                text=True, timeout=WAIT_LIMIT)
    assert result.returncode == 1, result.stderr
    assert f"crossdock: error: [metrics] port {port}: cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr
