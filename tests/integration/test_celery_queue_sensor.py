"""``CeleryQueueSensor`` on real Celery workers: it waits while a worker runs a task of the
watched queue, frees its own slot between pokes (reschedule mode), and lets its downstream
start only after that task finished — proved by the tasks' own ledger, not by states. The
sensor runs on the queue it watches, so its own try must not count.
"""

from __future__ import annotations

import uuid

import pytest

from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_worker import start_embedded_workers
from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files
from service_gates import REDIS_URL, require_service

DAG = """
import time
from crossdock import DAG, task, CeleryQueueSensor, PythonSensor

LEDGER = {ledger!r}

def note(line):
    with open(LEDGER, "a") as f:
        f.write(line + "\\n")

with DAG("drain_wait", schedule=None):
    @task(queue={busy!r})
    def slow():
        note("slow started")
        time.sleep(2)
        note("slow finished")

    @task
    def after():
        note("after ran")

    @task
    def after_slow():
        note("after_slow ran")

    # One sensor watches the whole queue, one only the slow task; both run on that queue.
    wait = CeleryQueueSensor(task_id="wait", celery_queue={busy!r}, queue={busy!r}, poke_interval=0.3,
                             timeout=60)
    wait_for_slow = CeleryQueueSensor(task_id="wait_for_slow", celery_queue={busy!r}, target_task_id="slow",
                                      queue={busy!r}, poke_interval=0.3, timeout=60)
    # The slow task must be running at the sensors' first poke, or there is nothing to wait for.
    slow_started = PythonSensor(task_id="slow_started", poke_interval=0.1, timeout=30,
                                python_callable=lambda: "slow started" in open(LEDGER).read())
    slow()
    slow_started >> [wait, wait_for_slow]
    wait >> after()
    wait_for_slow >> after_slow()
"""


@pytest.mark.redis
def test_the_sensors_wait_until_the_queue_or_their_target_has_drained(crossdock_home, monkeypatch):
    require_service("redis")
    busy, default = f"busy-{uuid.uuid4().hex[:8]}", f"default-{uuid.uuid4().hex[:8]}"
    ledger = crossdock_home / "ledger.txt"
    folder = use_dag_files(crossdock_home, monkeypatch,
                           {"drain_wait.py": DAG.format(ledger=str(ledger), busy=busy)},
                           CORE__EXECUTOR="CeleryExecutor", CORE__DEFAULT_QUEUE=default,
                           CELERY__BROKER_URL=f"{REDIS_URL}/4", SCHEDULER__MAX_LOOP_SLEEP="0.02")
    ledger.touch()
    with start_embedded_workers(queues=[busy, default], concurrency=2) as workers:
        workers.wait_ready()
        parse_and_trigger(folder, "drain_wait")
        transitions: list = []

        run_scheduler(CeleryExecutor(), transitions=transitions)
    state, tis = run_states("drain_wait")
    assert state == "success", {t: ti.state for t, ti in tis.items()}
    lines = ledger.read_text().splitlines()
    assert lines.count("slow finished") == 1 and lines.count("after ran") == 1 and lines.count("after_slow ran") == 1
    assert lines.index("slow finished") < lines.index("after ran")
    assert lines.index("slow finished") < lines.index("after_slow ran")
    for sensor in ("wait", "wait_for_slow"):
        assert any(t[0] == sensor and t[3] == "up_for_reschedule" for t in transitions), \
            f"{sensor} never had to wait"
