"""The autoscaler's figures: how long a burst waits for its first worker, and what a decision costs.

1. A burst (``--tasks`` mapped tasks of 0.1 s on one queue, ``max_workers 4``,
   ``max_tasks_per_worker 4``) through the scheduler with the local driver: seconds from
   the burst's first queued task (the scheduler's ``queued_dttm``) to its first running
   one (the task's own clock, written to a ledger), and to the scale-up decision. The
   burst is queued right after a monitor refresh, the worst moment: the next decision
   comes one interval and one refresh later. Cold (``min_workers 0``: no warm worker) at a
   short ``[worker_queues] interval`` and at the default one, beside the baseline of the
   same burst with 1 warm worker.
2. The autoscaler's own CPU per decision (``time.process_time`` around ``decide`` with 20
   queues and an in-memory driver, ``--decisions`` times): load unchanged, and load
   changing at every decision (a scale up or down and its log line per queue), beside
   the CPU of one queue-monitor refresh on the same database and broker, which every
   decision follows.

    python bench/bench_autoscaler.py               # a private redis-server as broker and backend
    python bench/bench_autoscaler.py --broker embedded
    python bench/bench_autoscaler.py --quick       # fewer tasks and decisions, no default-interval run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import timezone
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_services import own_redis_server  # noqa: E402

DEFAULT_TASKS = 100
QUICK_TASKS = 40
DEFAULT_DECISIONS = 1000
QUICK_DECISIONS = 200
DECISION_QUEUES = 20
SHORT_INTERVAL = 1.0
#: ``[worker_queues] interval``'s default, for the run a user gets without tuning.
DEFAULT_INTERVAL = 10.0
MAX_WORKERS = 4
TASKS_PER_WORKER = 4

DAG_FILE = '''
import time
from crossdock import DAG, task

with DAG("burst", schedule=None, max_active_tasks=64) as dag:
    @task(queue={queue!r})
    def burst(i):
        with open({ledger!r}, "a") as handle:
            handle.write(f"{{time.time()}}\\n")
        time.sleep(0.1)

    burst.expand(i=list(range({tasks})))
'''


def configure(home: Path, broker: str | None, settings: dict[str, str]) -> None:
    for name in [n for n in os.environ if n.startswith("CROSSDOCK__")]:
        del os.environ[name]
    os.environ["CROSSDOCK_HOME"] = str(home)
    values = {"CORE__EXECUTOR": "CeleryExecutor", "CORE__DAGS_FOLDER": str(home / "dags"),
              "CORE__PARALLELISM": "64", "CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
              "SCHEDULER__MAX_LOOP_SLEEP": "0.05",
              "SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0", "WORKER_QUEUES__DEFAULT_MIN_WORKERS": "0",
              "LOGGING__LOGGING_LEVEL": "WARNING", **settings}
    if broker:
        values.update({"CELERY__BROKER_URL": f"{broker}/0", "CELERY__RESULT_BACKEND": f"{broker}/1"})
    os.environ.update({f"CROSSDOCK__{key}": value for key, value in values.items()})
    from crossdock import database
    from crossdock.configuration import conf

    database.dispose_engine()
    conf.reload()
    database.migrate()


def epoch(moment) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def burst(broker: str | None, *, tasks: int, warm: int, interval: float) -> dict:
    """One burst through the scheduler with the local driver; its latency figures."""
    from sqlalchemy import func, select

    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.database import create_session
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.models import TaskInstance
    from crossdock.monitoring.autoscaler import Autoscaler
    from crossdock.monitoring.local_workers import LocalWorkerPool
    from crossdock.monitoring.queue_monitor import QueueMonitor
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    home = Path(tempfile.mkdtemp(prefix="crossdock-bench-autoscaler-"))
    (home / "dags").mkdir()
    queue, ledger = f"burst-{uuid.uuid4().hex[:6]}", home / "ledger"
    configure(home, broker, {"WORKER_QUEUES__QUEUES": json.dumps({queue: {
        "min_workers": warm, "max_workers": MAX_WORKERS, "max_tasks_per_worker": TASKS_PER_WORKER}}),
        "WORKER_QUEUES__INTERVAL": str(interval), "WORKER_QUEUES__COOLDOWN": "60"})
    (home / "dags" / "burst.py").write_text(DAG_FILE.format(queue=queue, ledger=str(ledger), tasks=tasks))
    with create_session() as session:
        sync_parse_result_to_db(parse_dag_folder(str(home / "dags")), session)
    monitor = QueueMonitor()
    pool = LocalWorkerPool(worker_queues=monitor.worker_queues)
    scaler = Autoscaler(monitor=monitor, pool=pool)
    decided_at: list[float] = []
    try:
        scaler.decide(QueueMonitor(read_workers=False).refresh())
        pool.wait_ready()
        refreshed = threading.Event()
        monitor.on_refresh(lambda _statuses: refreshed.set())  # called after the autoscaler's decision
        scaler.start()
        refreshed.wait(interval + 30)  # the worst moment: the next decision is a whole interval away
        with create_session() as session:
            create_dag_run(session, dag_id="burst", run_id="r1")

        def done(job) -> bool:
            workers = pool.workers(queue)
            decision = scaler.last_decisions.get(queue)
            if not decided_at and decision is not None and decision.action == "up" and len(workers) > warm:
                decided_at.append(decision.at)
            return job.loop_count > 1 and not job.runs

        job = SchedulerJob(executors=[CeleryExecutor()], parse_dags=False)
        job.run(stop_when=done)
        with create_session() as session:
            first_queued, last_end, states = session.execute(
                select(func.min(TaskInstance.queued_dttm), func.max(TaskInstance.end_date),
                       func.count(TaskInstance.state))).one()
        starts = sorted(float(line) for line in ledger.read_text().split())
        refresh_cpu = refresh_cost(monitor)
    finally:
        scaler.stop()
        pool.close()
        shutil.rmtree(home, ignore_errors=True)
    queued = epoch(first_queued)
    return {"first_running": starts[0] - queued, "decided": (decided_at[0] - queued) if decided_at else None,
            "burst": epoch(last_end) - queued, "tasks": len(starts), "refresh_cpu": refresh_cpu}


def refresh_cost(monitor) -> float:
    """CPU seconds of one monitor refresh (database, broker, workers) in this process."""
    started = time.process_time()
    monitor.refresh()
    return time.process_time() - started


class InMemoryPool:
    """A driver that only counts: the decision's own cost, nothing of a real driver's."""

    driver = "in-memory"

    def __init__(self) -> None:
        self.workers: dict[str, int] = {}

    def actual_workers(self, queue: str) -> int:
        return self.workers.get(queue, 0)

    def draining_workers(self, queue: str) -> list[str]:
        return []

    def scale_up(self, queue: str, count: int, status) -> None:
        self.workers[queue] = self.workers.get(queue, 0) + count

    def scale_down(self, queue: str, count: int, status) -> list[str]:
        self.workers[queue] -= count
        return [f"{queue}-{i}" for i in range(count)]

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


def decision_cpu(decisions: int) -> dict[str, float]:
    """CPU microseconds per decision with DECISION_QUEUES queues: load steady, then changing."""
    from crossdock.monitoring.autoscaler import Autoscaler
    from crossdock.monitoring.queue_monitor import CELERY, QueueMonitor
    from crossdock.monitoring.queue_status import QueueStatus

    home = Path(tempfile.mkdtemp(prefix="crossdock-bench-decisions-"))
    (home / "dags").mkdir()
    names = [f"q{i:02d}" for i in range(DECISION_QUEUES)]
    configure(home, None, {"WORKER_QUEUES__QUEUES": json.dumps(
        {name: {"min_workers": 0, "max_workers": 10, "max_tasks_per_worker": 4} for name in names})})
    logger = logging.getLogger("crossdock.monitoring.autoscaler")
    logger.addHandler(logging.NullHandler())
    logger.setLevel(logging.INFO)  # the decision lines are formatted, as under standalone
    logger.propagate = False
    scaler = Autoscaler(monitor=QueueMonitor(), pool=InMemoryPool(), cooldown=0)
    loads = [[QueueStatus(queue=n, executor=CELERY, queued=q, running=4) for n in names] for q in (8, 36)]
    figures = {}
    try:
        for label, pick in (("steady", lambda i: loads[0]), ("changing", lambda i: loads[i % 2])):
            scaler.decide(pick(1))
            started = time.process_time()
            for i in range(decisions):
                scaler.decide(pick(i))
            figures[label] = (time.process_time() - started) / decisions * 1e6
    finally:
        logger.propagate = True
        shutil.rmtree(home, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default=None, help="'embedded' (the serverless default) or a redis:// URL; "
                                                       "default: a private redis-server")
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="tasks in the burst")
    parser.add_argument("--decisions", type=int, default=DEFAULT_DECISIONS, help="decisions timed")
    parser.add_argument("--quick", action="store_true", help="fewer tasks and decisions, no default-interval run")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.decisions = QUICK_TASKS, QUICK_DECISIONS
    with contextlib.ExitStack() as owned:
        broker = args.broker
        if broker is None:
            broker = owned.enter_context(own_redis_server())
        elif broker == "embedded":
            broker = None
        print(f"broker {broker or 'embedded (filesystem)'}; burst of {args.tasks} tasks of 0.1 s, max_workers "
              f"{MAX_WORKERS} x {TASKS_PER_WORKER}; {os.cpu_count()} cpus", flush=True)
        runs = [("1 warm worker (baseline)", 1, SHORT_INTERVAL), ("0 warm workers", 0, SHORT_INTERVAL)]
        if not args.quick:
            runs.append(("0 warm workers", 0, DEFAULT_INTERVAL))
        refresh_cpu = None
        for label, warm, interval in runs:
            figures = burst(broker, tasks=args.tasks, warm=warm, interval=interval)
            refresh_cpu = figures["refresh_cpu"]
            decided = f"{figures['decided']:.2f} s" if figures["decided"] is not None else "-"
            print(f"{label:25} interval {interval:4.1f} s: first queued -> first running {figures['first_running']:5.2f} s"
                  f" (-> scale-up decided {decided}), whole burst {figures['burst']:5.2f} s "
                  f"({figures['tasks']} tasks ran)", flush=True)
    cpu = decision_cpu(args.decisions)
    print(f"autoscaler CPU per decision, {DECISION_QUEUES} queues, {args.decisions} decisions: "
          f"{cpu['steady']:.0f} µs load steady, {cpu['changing']:.0f} µs load changing every time "
          f"({cpu['changing'] / DECISION_QUEUES:.0f} µs per queue); one monitor refresh (database, broker, "
          f"workers): {refresh_cpu * 1e6:.0f} µs CPU in this process", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
