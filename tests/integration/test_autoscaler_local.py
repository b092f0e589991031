"""The autoscaler with its local driver: real worker processes, real brokers, a real scheduler.

On Redis (the run's own server) and on RabbitMQ (a queue name of the test's own), with
``[worker_queues] interval`` 0.5 s and a 1 s cool-down:

- a burst of 300 short tasks on a queue with ``min_workers 0 / max_workers 4 /
  max_tasks_per_worker 4`` takes the queue from 0 workers to 4 and back to 0, and every
  task runs exactly once, as a ledger the tasks append to shows (not the scheduler's
  records). After the burst, 16 tasks hold all 16 slots until the test releases them:
  12 first, chosen so that each worker keeps one running task. The load then calls for
  one worker, every worker is busy, so the retired ones are drained while they run; the
  drain grace (1 s) passes and they are reported, never killed; released last, their
  tasks finish at try 1.
- a worker killed with SIGKILL is noticed and replaced by a new one that consumes the queue.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import uuid

import pytest

from crossdock.configuration import conf
from crossdock.processes import group_members
from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files
from process_helpers import process_gone, wait_for
from service_gates import RABBITMQ_URL, REDIS_URL, require_service

BURST_TASKS = 300
HOLD_TASKS = 16
MAX_WORKERS = 4
TASKS_PER_WORKER = 4
DRAIN_GRACE = 1.0
#: Upper bound of every wait: a hang fails the test instead of blocking the suite.
WAIT_LIMIT = 60.0

DAG_FILE = '''
import os, time
from crossdock import DAG, task

LEDGER = {ledger!r}
RELEASE = {release!r}

def note(text):
    with open(LEDGER, "a") as handle:
        handle.write(text + "\\n")

with DAG("burst", schedule=None, max_active_tasks=64) as dag:
    @task(queue={queue!r})
    def burst(i, map_index=None, try_number=None):
        time.sleep(0.2)
        note(f"burst {{map_index}} {{try_number}} {{os.getpid()}}")

    @task(queue={queue!r})
    def hold(i, map_index=None, try_number=None):
        note(f"hold-start {{map_index}} {{try_number}} {{os.getpid()}}")
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(RELEASE, str(map_index))):
            if time.monotonic() > deadline:
                raise RuntimeError("never released")
            time.sleep(0.05)
        note(f"hold-end {{map_index}} {{try_number}} {{os.getpid()}}")

    burst.expand(i=list(range({burst}))) >> hold.expand(i=list(range({hold})))
'''


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request, monkeypatch):
    """Point Celery at the broker; yield a queue name of this test's own."""
    require_service("redis")
    if request.param == "rabbitmq":
        require_service("rabbitmq")
    queue = f"burst-{uuid.uuid4().hex[:8]}"
    settings = {
        "CORE__EXECUTOR": "CeleryExecutor",
        "CORE__DEFAULT_QUEUE": f"default-{queue}",
        "CORE__PARALLELISM": "64",
        "CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "CELERY__BROKER_URL": f"{REDIS_URL}/5" if request.param == "redis" else RABBITMQ_URL,
        "CELERY__RESULT_BACKEND": f"{REDIS_URL}/6",
        "SCHEDULER__MAX_LOOP_SLEEP": "0.05",
        "WORKER_QUEUES__QUEUES": json.dumps({queue: {"min_workers": 0, "max_workers": MAX_WORKERS,
                                                     "max_tasks_per_worker": TASKS_PER_WORKER}}),
        # Nothing for queues this test does not own (other suites' workers on a shared RabbitMQ).
        "WORKER_QUEUES__DEFAULT_MIN_WORKERS": "0",
        "WORKER_QUEUES__INTERVAL": "0.5",
        "WORKER_QUEUES__COOLDOWN": "1",
        "WORKER_QUEUES__DRAIN_GRACE": str(DRAIN_GRACE),
    }
    for key, value in settings.items():
        monkeypatch.setenv(f"CROSSDOCK__{key}", value)
    conf.reload()
    yield queue
    if request.param == "rabbitmq":
        from crossdock.executors.celery_app import get_celery_app

        with get_celery_app().connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)


@pytest.fixture
def autoscaled(broker):
    """A started monitor + autoscaler with the local driver; everything stopped afterwards."""
    from crossdock.monitoring.autoscaler import Autoscaler
    from crossdock.monitoring.local_workers import LocalWorkerPool
    from crossdock.monitoring.queue_monitor import QueueMonitor

    def start():
        monitor = QueueMonitor()
        pool = LocalWorkerPool(worker_queues=monitor.worker_queues)
        scaler = Autoscaler(monitor=monitor, pool=pool)
        started.append((scaler, pool))
        return scaler.start(), pool

    started: list = []
    yield broker, start
    for scaler, pool in started:
        scaler.stop()
        pool.close()


def group_gone(pgid: int) -> bool:
    """Whether every process of a worker's group (its pool processes, their zygotes) has exited."""
    return all(process_gone(pid) for pid in group_members(pgid))


def ledger_lines(path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


class Choreography:
    """Steps the test takes between scheduler loop steps (never blocking the loop)."""

    def __init__(self, *, pool, queue: str, ledger, release, records):
        self.pool, self.queue, self.ledger, self.release, self.records = pool, queue, ledger, release, records
        self.most_workers = 0
        self.kept: dict[str, int] = {}  # worker hostname → the hold task it keeps running
        self.drained_busy: dict[str, int] = {}  # retired worker → its pid, while its task still ran
        self.step = "wait for every hold task to run"

    def __call__(self, _job) -> None:
        self.most_workers = max(self.most_workers, self.pool.actual_workers(self.queue))
        if self.step == "wait for every hold task to run":
            if sum(1 for line in ledger_lines(self.ledger) if line[0] == "hold-start") == HOLD_TASKS:
                self._release_all_but_one_per_worker()
        elif self.step == "wait for three busy drains past the grace":
            draining = self.pool.draining_workers(self.queue)
            reported = {name for name in draining if any(name in r.getMessage() and "left running" in r.getMessage()
                                                          for r in self.records)}
            if len(draining) == MAX_WORKERS - 1 and reported == set(draining):
                self.drained_busy = {w.hostname: w.pid for w in self.pool.workers(self.queue)
                                     if w.hostname in draining and w.exit_code() is None}
                for map_index in self.kept.values():
                    (self.release / str(map_index)).touch()
                self.step = "let the run finish"

    def _release_all_but_one_per_worker(self) -> None:
        from crossdock.monitoring.worker_drain import held_tasks

        hostnames = [w.hostname for w in self.pool.workers(self.queue)]
        held = held_tasks(self.pool.app.control, hostnames)
        placement = {}
        for hostname, requests in held.items():
            for request in requests:
                command = request["args"][0]
                if command[4] == "hold":
                    placement[int(command[command.index("--map-index") + 1])] = hostname
        assert len(placement) == HOLD_TASKS and len(set(placement.values())) == MAX_WORKERS, placement
        for map_index, hostname in sorted(placement.items()):
            if hostname not in self.kept:
                self.kept[hostname] = map_index
            else:
                (self.release / str(map_index)).touch()
        self.step = "wait for three busy drains past the grace"


@pytest.mark.redis
@pytest.mark.rabbitmq
def test_a_burst_goes_0_to_4_to_0_workers_every_task_once_and_drains_never_interrupt(
        autoscaled, crossdock_home, monkeypatch, caplog):
    from crossdock.executors.celery_executor import CeleryExecutor

    queue, start = autoscaled
    ledger, release = crossdock_home / "ledger", crossdock_home / "release"
    release.mkdir()
    folder = use_dag_files(crossdock_home, monkeypatch, {"burst.py": DAG_FILE.format(
        ledger=str(ledger), release=str(release), queue=queue, burst=BURST_TASKS, hold=HOLD_TASKS)})
    caplog.set_level(logging.INFO, logger="crossdock.monitoring.autoscaler")
    parse_and_trigger(folder, "burst")
    scaler, pool = start()
    assert pool.workers(queue) == []  # min_workers 0: nothing before the first task
    steps = Choreography(pool=pool, queue=queue, ledger=ledger, release=release, records=caplog.records)
    run_scheduler(CeleryExecutor(), on_loop=steps, limit=WAIT_LIMIT)
    state, tis = run_states("burst")

    assert state == "success", steps.step
    assert steps.most_workers == MAX_WORKERS
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith(f"autoscaler: queue {queue} 0 -> 4 workers (ceil((") and
               line.endswith("capped at max_workers 4) [local]") for line in lines), lines
    # Every task ran once, at try 1, whoever was scaled down around it.
    rows = ledger_lines(ledger)
    for kind, count in (("burst", BURST_TASKS), ("hold-start", HOLD_TASKS), ("hold-end", HOLD_TASKS)):
        runs = sorted((int(row[1]), row[2]) for row in rows if row[0] == kind)
        assert runs == [(index, "1") for index in range(count)], kind
    from crossdock.database import create_session
    from crossdock.models import TaskInstance
    from sqlalchemy import select

    with create_session() as session:
        finished = session.execute(select(TaskInstance.state, TaskInstance.try_number)
                                   .where(TaskInstance.dag_id == "burst")).all()
    assert sorted(set(finished)) == [("success", 1)] and len(finished) == BURST_TASKS + HOLD_TASKS
    # Three workers were retired while each still ran a task, reported past the grace, not killed.
    assert len(steps.drained_busy) == MAX_WORKERS - 1, steps.drained_busy
    for hostname in steps.drained_busy:
        assert any(hostname in line and "burst.hold[" in line and "left running, not killed" in line
                   for line in lines), hostname
    # ... and the queue went back to 0 once it was quiet: every worker process is gone.
    assert wait_for(lambda: pool.workers(queue) == [], limit=WAIT_LIMIT), pool.workers(queue)
    assert all(group_gone(pid) for pid in steps.drained_busy.values())
    assert scaler.last_decisions[queue].desired == 0


@pytest.mark.redis
@pytest.mark.rabbitmq
# Noticing a dead worker process and replacing it is the driver's own work, the same on any
# broker (the burst above runs on both): Redis alone keeps the suite's time for the rest.
@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_worker_killed_with_sigkill_is_replaced(autoscaled, monkeypatch, caplog):
    from crossdock.database import migrate

    queue, start = autoscaled
    monkeypatch.setenv("CROSSDOCK__WORKER_QUEUES__QUEUES", json.dumps(
        {queue: {"min_workers": 1, "max_workers": 2, "max_tasks_per_worker": 2}}))
    conf.reload()
    migrate()
    caplog.set_level(logging.INFO, logger="crossdock.monitoring.autoscaler")
    scaler, pool = start()

    def consuming() -> list[str]:
        status = scaler.monitor.status(queue)
        return [host.hostname for host in status.worker_hosts] if status else []

    assert wait_for(lambda: len(consuming()) == 1, limit=WAIT_LIMIT), pool.workers(queue)
    [victim] = pool.workers(queue)
    os.kill(victim.pid, signal.SIGKILL)

    def replaced() -> bool:
        workers = pool.workers(queue)
        return (len(workers) == 1 and workers[0].hostname != victim.hostname
                and consuming() == [workers[0].hostname])

    assert wait_for(replaced, limit=WAIT_LIMIT), (pool.workers(queue), consuming())
    assert any(f"local worker {victim.hostname} of queue {queue} killed by signal SIGKILL; no longer counted"
               in r.getMessage() for r in caplog.records)
    assert group_gone(victim.pid)  # its pool processes went with it
    assert scaler.last_decisions[queue].actual == 1
