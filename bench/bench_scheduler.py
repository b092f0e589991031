"""Scheduler benchmark on the LocalExecutor: fan-out throughput, chain latency, loop cost.

Prints, for SQLite and (when reachable) PostgreSQL:

(a) one DAG of N independent no-op tasks: wall time trigger → run success, tasks/s;
(b) a chain of M no-op tasks: median and p95 time from an upstream's success to its
    downstream's start (as the scheduler recorded them), and wall time per link;
(c) scheduler loop time with 10, 1,000 and 10,000 task instances in flight, to show the
    cost grows with what changed, not with what exists;
and the scheduler process's peak RSS.

Baseline in the same run: the cost of one bare fork + exit of a warm Python process
(what a task cannot go below on this machine) is printed beside the per-task figures.

    python bench/bench_scheduler.py [--tasks 1000] [--chain 100] [--quick] [--no-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_services import own_postgres_database, port_open  # noqa: E402


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def fork_baseline_ms(samples: int = 200) -> float:
    """Median cost of fork + _exit + waitpid of this (warm) process."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def setup_home(backend: str, postgres_url: str | None = None) -> Path:
    home = Path(tempfile.mkdtemp(prefix="crossdock-bench-"))
    os.environ["CROSSDOCK_HOME"] = str(home)
    for name in [n for n in os.environ if n.startswith("CROSSDOCK__")]:
        del os.environ[name]
    os.environ["CROSSDOCK__CORE__DAGS_FOLDER"] = str(home / "dags")
    os.environ["CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"  # the benches trigger what they write
    os.environ["CROSSDOCK__CORE__PARALLELISM"] = "64"
    os.environ["CROSSDOCK__CORE__MAX_ACTIVE_TASKS_PER_DAG"] = "64"
    os.environ["CROSSDOCK__SCHEDULER__DAG_DIR_LIST_INTERVAL"] = "0"
    os.environ["CROSSDOCK__SCHEDULER__NEW_RUNS_POLL_INTERVAL"] = "0.05"
    if backend == "postgresql":
        os.environ["CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN"] = postgres_url
    from crossdock import database
    from crossdock.configuration import conf

    conf.reload()
    database.dispose_engine()
    database.reset()
    (home / "dags").mkdir()
    return home


def write_dags(home: Path, *, tasks: int, chain: int) -> None:
    (home / "dags" / "bench_dags.py").write_text(textwrap.dedent(f"""
        from crossdock import DAG, PythonOperator

        def noop():
            pass

        with DAG("bench_fan_out", max_active_tasks=64) as fan_out:
            for i in range({tasks}):
                PythonOperator(task_id=f"t{{i}}", python_callable=noop)

        with DAG("bench_chain") as chain:
            previous = None
            for i in range({chain}):
                current = PythonOperator(task_id=f"c{{i:03d}}", python_callable=noop)
                if previous is not None:
                    previous >> current
                previous = current
    """))


def run_dag(dag_id: str, executor=None):
    """Trigger ``dag_id`` and run a scheduler (the LocalExecutor unless given) until it ends."""
    from sqlalchemy import select

    from crossdock.database import create_session
    from crossdock.executors.executor_loader import load_executors
    from crossdock.models import TaskInstance
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    job = SchedulerJob(executors=[executor] if executor is not None else load_executors("LocalExecutor"),
                       parse_dags=False)
    with create_session() as session:
        run_id = create_dag_run(session, dag_id=dag_id).run_id
    started = time.perf_counter()
    job.run(stop_when=lambda j: j.loop_count > 1 and not j.runs)
    wall = time.perf_counter() - started
    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                         TaskInstance.run_id == run_id)).all()
    return wall, tis


def bench_fan_out(tasks: int) -> dict:
    wall, tis = run_dag("bench_fan_out")
    ok = sum(ti.state == "success" for ti in tis)
    return {"wall_s": wall, "tasks_per_s": ok / wall, "succeeded": ok, "tasks": len(tis)}


def bench_chain() -> dict:
    wall, tis = run_dag("bench_chain")
    by_id = {ti.task_id: ti for ti in tis}
    gaps = []
    for ti in tis:
        index = int(ti.task_id[1:])
        if index == 0:
            continue
        upstream = by_id[f"c{index - 1:03d}"]
        gaps.append((ti.start_date - upstream.end_date).total_seconds() * 1000)
    return {"links": len(gaps), "p50_ms": statistics.median(gaps), "p95_ms": percentile(gaps, 0.95),
            "wall_per_link_ms": wall * 1000 / max(1, len(tis)),
            "succeeded": sum(ti.state == "success" for ti in tis)}


def bench_loop_cost(in_flight: int, loops: int = 200) -> dict:
    """Loop time with ``in_flight`` task instances held running, idle and with one change per step."""
    from crossdock.database import create_session
    from crossdock.executors.base_executor import BaseExecutor
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    class HoldingExecutor(BaseExecutor):
        """Accepts every command and keeps it running until told to finish one."""

        def execute_async(self, key, command, queue=None, executor_config=None):
            pass

        def sync(self):
            pass

        def end(self):
            pass

        def terminate(self):
            pass

    home = Path(os.environ["CROSSDOCK_HOME"])
    (home / "dags" / f"loop_{in_flight}.py").write_text(textwrap.dedent(f"""
        from crossdock import DAG, BashOperator
        with DAG("loop_{in_flight}", max_active_tasks={in_flight}) as dag:
            for i in range({in_flight}):
                BashOperator(task_id=f"t{{i}}", bash_command="true", pool_slots=1)
    """))
    from crossdock.cli.dags_command import parse_dags_folder_into_db

    parse_dags_folder_into_db()
    os.environ["CROSSDOCK__CORE__PARALLELISM"] = str(in_flight + 10)
    os.environ["CROSSDOCK__CORE__DEFAULT_POOL_SLOTS"] = str(in_flight + 10)
    from crossdock.configuration import conf
    from crossdock.database import migrate
    from crossdock.models import Pool
    from sqlalchemy import update

    conf.reload()
    migrate()
    with create_session() as session:
        session.execute(update(Pool).where(Pool.pool == "default_pool").values(slots=in_flight + 10))
        create_dag_run(session, dag_id=f"loop_{in_flight}")
    executor = HoldingExecutor(parallelism=0)
    job = SchedulerJob(executors=[executor], parse_dags=False)
    job.start()
    while job.task_instances_in_flight() < in_flight:
        job.loop_once()
    idle = []
    for _ in range(loops):
        started = time.perf_counter()
        job.loop_once()
        idle.append(time.perf_counter() - started)
    busy = []
    running = sorted(executor.running)
    for key in running[:loops]:
        executor.success(key)
        started = time.perf_counter()
        job.loop_once()
        busy.append(time.perf_counter() - started)
    job.stop()
    os.environ["CROSSDOCK__CORE__PARALLELISM"] = "64"
    conf.reload()
    return {"in_flight": in_flight, "idle_loop_ms": statistics.median(idle) * 1000,
            "one_change_loop_ms": statistics.median(busy) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="200 tasks, chain of 30, loop sizes 10/1000")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.chain = 200, 30
    sizes = [10, 1000] if args.quick else [10, 1000, 10000]
    backends = ["sqlite"] + ([] if args.no_postgres or not port_open(5432) else ["postgresql"])

    print(f"baseline: bare fork+exit+wait of a warm process: {fork_baseline_ms():.2f} ms (median)")
    for backend in backends:
        with contextlib.ExitStack() as stack:
            postgres_url = stack.enter_context(own_postgres_database()) if backend == "postgresql" else None
            bench_backend(backend, args, sizes, postgres_url)
    return 0


def bench_backend(backend: str, args, sizes: list[int], postgres_url: str | None) -> None:
    home = setup_home(backend, postgres_url)
    write_dags(home, tasks=args.tasks, chain=args.chain)
    from crossdock.cli.dags_command import parse_dags_folder_into_db

    parse_dags_folder_into_db()
    fan = bench_fan_out(args.tasks)
    print(f"[{backend}] (a) fan-out {fan['tasks']} no-op tasks: {fan['wall_s']:.2f} s, "
          f"{fan['tasks_per_s']:.1f} tasks/s ({fan['succeeded']} succeeded)")
    chain = bench_chain()
    print(f"[{backend}] (b) chain of {args.chain}: upstream success → downstream start "
          f"p50 {chain['p50_ms']:.1f} ms, p95 {chain['p95_ms']:.1f} ms; "
          f"wall per link {chain['wall_per_link_ms']:.1f} ms ({chain['succeeded']} succeeded)")
    for size in sizes:
        loop = bench_loop_cost(size)
        print(f"[{backend}] (c) {size:>6} in flight: idle loop {loop['idle_loop_ms']:.3f} ms, "
              f"loop with one finished task {loop['one_change_loop_ms']:.3f} ms")
    print(f"[{backend}] peak RSS: scheduler {peak_rss_mib():.0f} MiB, "
          f"largest child {children_peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
