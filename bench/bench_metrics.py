"""What the scheduler's metrics cost its loop: the same fan-out run with metrics off and on.

One DAG of N independent no-op tasks on the LocalExecutor and SQLite, run alternately
with metrics off and with everything ``[metrics] enabled`` turns on: the instruments
(a state listener and a loop listener), the HTTP endpoint, a queue monitor refreshing
in the background and a scraper fetching ``/metrics`` — both far more often than the
defaults (``[worker_queues] interval`` 10 s, a Prometheus scrape every 15 s) so their
cost shows. Both modes measure loop steps with the same listener.

Prints, per mode, the median over rounds of: loop step p50 / p95 / mean, loop steps,
wall time trigger → run end, tasks/s; then the state listener's own cost per transition.

    python bench/bench_metrics.py [--tasks 500] [--rounds 3] [--monitor-interval 1] [--scrape-interval 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scheduler import percentile, setup_home, write_dags  # noqa: E402


def run_once(*, metrics_on: bool, monitor_interval: float, scrape_interval: float) -> dict:
    """Trigger the fan-out DAG and run a scheduler until it ends; loop and wall figures."""
    from crossdock.database import create_session
    from crossdock.executors.executor_loader import load_executors
    from crossdock.models import TaskInstance
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob
    from sqlalchemy import func, select

    job = SchedulerJob(executors=load_executors("LocalExecutor"), parse_dags=False)
    loops: list[float] = []
    job.loop_listeners.append(loops.append)
    handle, scraper, scrapes = None, None, []
    stop = threading.Event()
    if metrics_on:
        from crossdock.monitoring.metrics_server import start_scheduler_metrics
        from crossdock.monitoring.queue_monitor import QueueMonitor

        handle = start_scheduler_metrics(job, monitor=QueueMonitor(interval=monitor_interval).start(),
                                         default_enabled=True)

        def scrape_forever() -> None:
            while not stop.wait(scrape_interval):
                started = time.perf_counter()
                with urllib.request.urlopen(handle.url, timeout=10) as response:
                    response.read()
                scrapes.append(time.perf_counter() - started)

        scraper = threading.Thread(target=scrape_forever, daemon=True)
        scraper.start()
    with create_session() as session:
        run_id = create_dag_run(session, dag_id="bench_fan_out").run_id
    started = time.perf_counter()
    try:
        job.run(stop_when=lambda j: j.loop_count > 1 and not j.runs)
        wall = time.perf_counter() - started
    finally:
        stop.set()
        if scraper is not None:
            scraper.join()
        if handle is not None:
            handle.monitor.stop()
            handle.stop()
    with create_session() as session:
        ok = session.scalar(select(func.count()).select_from(TaskInstance).where(
            TaskInstance.run_id == run_id, TaskInstance.state == "success"))
    return {"p50_ms": statistics.median(loops) * 1000, "p95_ms": percentile(loops, 0.95) * 1000,
            "mean_ms": statistics.fmean(loops) * 1000, "loops": len(loops), "wall_s": wall,
            "tasks_per_s": ok / wall, "succeeded": ok, "scrapes": len(scrapes),
            "scrape_ms": statistics.median(scrapes) * 1000 if scrapes else float("nan")}


def listener_cost_us(transitions: int = 100_000) -> float:
    """Microseconds the metrics' state listener takes per outcome transition (a try ending)."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from crossdock.monitoring.metrics import SchedulerMetrics

    metrics = SchedulerMetrics()
    now = datetime.now(timezone.utc)
    tis = [SimpleNamespace(dag_id=f"dag{i % 10}", queue="default", executor="LocalExecutor", duration=0.5,
                           queued_dttm=now, start_date=now) for i in range(100)]
    started = time.perf_counter()
    for i in range(transitions):
        metrics.task_state_changed(tis[i % 100], "running", "success")
    return (time.perf_counter() - started) / transitions * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs, alternated (default 3)")
    parser.add_argument("--monitor-interval", type=float, default=1.0, help="queue monitor refresh, seconds")
    parser.add_argument("--scrape-interval", type=float, default=1.0, help="seconds between scrapes")
    args = parser.parse_args()

    home = setup_home("sqlite")
    os.environ["CROSSDOCK__METRICS__PORT"] = "0"  # a free port: never another process's 9464
    from crossdock.configuration import conf

    conf.reload()
    write_dags(home, tasks=args.tasks, chain=2)
    from crossdock.cli.dags_command import parse_dags_folder_into_db

    parse_dags_folder_into_db()
    results: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            results[mode].append(run_once(metrics_on=mode == "on", monitor_interval=args.monitor_interval,
                                          scrape_interval=args.scrape_interval))
    print(f"fan-out of {args.tasks} no-op tasks, LocalExecutor, SQLite; medians of {args.rounds} alternated rounds")
    print(f"'on': metrics + endpoint + queue monitor every {args.monitor_interval:g} s + a scrape every "
          f"{args.scrape_interval:g} s")
    for mode, runs in results.items():
        med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        line = (f"metrics {mode:>3}: loop p50 {med['p50_ms']:.3f} ms, p95 {med['p95_ms']:.3f} ms, "
                f"mean {med['mean_ms']:.3f} ms over {med['loops']:.0f} steps; wall {med['wall_s']:.2f} s, "
                f"{med['tasks_per_s']:.1f} tasks/s ({med['succeeded']:.0f} succeeded)")
        if mode == "on":
            line += f"; {med['scrapes']:.0f} scrapes, {med['scrape_ms']:.2f} ms each"
        print(line)
    print(f"state listener: {listener_cost_us():.2f} µs per finished try (counter + duration histogram)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
