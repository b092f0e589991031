"""Raw Celery vs. crossdock's CeleryExecutor on the same broker and worker settings.

Prints, side by side: no-op tasks per second through a bare Celery app, through the
CeleryExecutor alone (real ``crossdock tasks run`` commands, no scheduler) and through
the scheduler with the CeleryExecutor (one DAG of N independent no-op tasks); the ratio
to raw Celery; p50/p95 latency from queued to running; and peak RSS of this process (the
scheduler) and of the worker processes; CPU per task by process; and, without Celery,
what a try costs inside a worker's zygote beside the floor of a bare fork from it.

    python bench/bench_celery.py                 # 2,000 tasks, Redis broker and backend
    python bench/bench_celery.py --quick         # 200 tasks
    python bench/bench_celery.py --tasks 500 --modes raw,scheduler
    python bench/bench_celery.py --metadata-db postgres   # a PostgreSQL database of its own

Broker and result backend are a private redis-server started for the run unless
``--broker``/``--result-backend`` name others. The metadata database is a fresh SQLite
file, or with ``--metadata-db postgres`` a database created on the local PostgreSQL for
the run and dropped after it; any other URL is reset: never name one you care about.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_services import own_postgres_database, own_redis_server  # noqa: E402

DEFAULT_TASKS = 2000
QUICK_TASKS = 200
DEFAULT_CONCURRENCY = 2
MODES = ("raw", "executor", "scheduler")
RAW_TASK = "bench.noop"
#: Settings both sides share; crossdock's [celery] defaults are the same values.
RAW_SETTINGS = {
    "task_serializer": "json", "result_serializer": "json", "accept_content": ["json"],
    "task_acks_late": True, "worker_prefetch_multiplier": 1, "broker_connection_retry_on_startup": True,
}


# -- raw Celery --------------------------------------------------------------------------


def raw_app(broker: str, backend: str):
    from celery import Celery

    app = Celery("bench_raw", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(RAW_SETTINGS)
    app.conf.broker_transport_options = {"visibility_timeout": 86400}

    @app.task(name=RAW_TASK)
    def noop(sent_at: float) -> float:
        return time.time() - sent_at

    return app


def raw_worker_main(argv: list[str]) -> None:
    """Entry point of the raw worker subprocess: ``bench_celery.py --raw-worker BROKER BACKEND QUEUE N``."""
    broker, backend, queue, concurrency = argv
    app = raw_app(broker, backend)
    app.worker_main(["worker", "-Q", queue, "-c", concurrency, "-P", "prefork", "-l", "WARNING",
                     "--without-mingle", "--without-gossip", "-n", f"raw-{queue}@%h"])


def bench_raw(args, queue: str) -> dict:
    app = raw_app(args.broker, args.result_backend)
    worker = subprocess.Popen([sys.executable, __file__, "--raw-worker", args.broker, args.result_backend,
                               queue, str(args.concurrency)], start_new_session=True)
    try:
        wait_for_worker(app, f"raw-{queue}@")
        task = app.tasks[RAW_TASK]
        meter = CpuMeter([worker.pid])
        started = time.perf_counter()
        results = [task.apply_async(args=[time.time()], queue=queue) for _ in range(args.tasks)]
        latencies = [result.get(timeout=600) for result in results]
        elapsed = time.perf_counter() - started
        worker_rss = process_tree_peak_rss_mb(worker.pid)
        cpu = meter.per_task_ms(args.tasks)
    finally:
        stop(worker)
    return {"elapsed": elapsed, "latencies": latencies, "worker_rss_mb": worker_rss, "cpu": cpu}


def wait_for_worker(app, name_prefix: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5) or []
        if any(name.startswith(name_prefix) for reply in replies for name in reply):
            return
    raise SystemExit(f"worker {name_prefix}* did not come up within {limit:.0f}s")


def stop(process: subprocess.Popen) -> None:
    import signal

    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# -- crossdock -----------------------------------------------------------------------------


def write_dag(folder: Path, dag_id: str, tasks: int) -> Path:
    path = folder / f"{dag_id}.py"
    path.write_text(textwrap.dedent(f"""
        from crossdock import DAG, PythonOperator

        def noop():
            pass

        with DAG({dag_id!r}) as dag:
            for i in range({tasks}):
                PythonOperator(f"t{{i}}", python_callable=noop)
    """))
    return path


class FakeTI:
    def __init__(self, key):
        self.key = key
        self.executor_config = None


def bench_executor(args, dag_path: Path, queue: str) -> dict:
    """The CeleryExecutor alone: heartbeat until every command reported an outcome."""
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.models.taskinstancekey import TaskInstanceKey
    from crossdock.runner.command import task_run_command
    from crossdock.state import TaskInstanceState as S

    executor = CeleryExecutor(parallelism=0)
    executor.start()
    size = args.dag_size or args.tasks
    keys = [TaskInstanceKey("bench_noop", f"t{i % size}", f"bench_run_{i // size}", 1) for i in range(args.tasks)]
    queued_at, running_at, failed = {}, {}, []
    done = set()
    started = time.perf_counter()
    for key in keys:
        executor.queue_command(FakeTI(key), task_run_command(key, subdir=str(dag_path)), queue=queue)
    while len(done) < len(keys):
        executor.heartbeat()
        now = time.perf_counter()
        for key, (state, info) in executor.get_event_buffer().items():
            if state == S.QUEUED:
                queued_at[key] = now
            elif state == S.RUNNING:
                running_at.setdefault(key, now)
            elif state in (S.SUCCESS, S.FAILED):
                done.add(key)
                running_at.setdefault(key, now)
                if state == S.FAILED:
                    failed.append((key, info))
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    if failed:
        print(f"  {len(failed)} tasks failed, e.g. {failed[0]}", file=sys.stderr)
    latencies = [running_at[k] - queued_at[k] for k in keys if k in queued_at and k in running_at]
    return {"elapsed": elapsed, "latencies": latencies, "failed": len(failed)}


def bench_scheduler(args, dags_folder: Path) -> dict:
    """A DAG run of N independent no-op tasks through the scheduler and the CeleryExecutor."""
    from sqlalchemy import select

    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.database import create_session
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.models import DagRun, TaskInstance
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    result = parse_dag_folder(str(dags_folder))
    with create_session() as session:
        sync_parse_result_to_db(result, session)
    with create_session() as session:
        create_dag_run(session, dag_id="bench_noop", run_id="sched_run")
    job = SchedulerJob(executors=[CeleryExecutor()], parse_dags=False)
    started = time.perf_counter()
    job.run(stop_when=lambda j: j.loop_count > 1 and not j.runs)
    elapsed = time.perf_counter() - started
    from crossdock.executors.celery_app import get_celery_app
    from crossdock.executors.celery_state_fetcher import fetch_states

    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.run_id == "sched_run")).one()
        tis = session.scalars(select(TaskInstance).where(TaskInstance.run_id == "sched_run")).all()
        # Queued: when the scheduler queued the try; running: when the worker claimed it
        # (its result carries the claim time), so tasks too short to be seen running count.
        found = fetch_states(get_celery_app().backend, [ti.external_executor_id for ti in tis
                                                         if ti.external_executor_id])
        latencies = []
        for ti in tis:
            meta = found.get(ti.external_executor_id)
            if meta is not None and isinstance(meta.meta, dict) and ti.queued_dttm:
                latencies.append(meta.meta["started_at"] - ti.queued_dttm.timestamp())
        states = {}
        for ti in tis:
            states[ti.state] = states.get(ti.state, 0) + 1
    return {"elapsed": elapsed, "latencies": latencies, "run_state": run.state, "states": states}


# -- measuring -------------------------------------------------------------------------------


def process_tree_peak_rss_mb(pid: int) -> float:
    """Largest peak RSS (VmHWM) among ``pid`` and its descendants, in MiB."""
    peak = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            with open(f"/proc/{current}/task/{current}/children") as handle:
                pending += [int(child) for child in handle.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return peak / 1024


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_of(pid: int) -> tuple[float, list[int]]:
    """CPU seconds of ``pid`` (its own plus its reaped children's) and its live children."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        fields = stat[stat.rfind(b")") + 2:].split()
        seconds = sum(int(value) for value in fields[11:15]) / _TICK  # utime stime cutime cstime
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return seconds, [int(child) for child in handle.read().split()]
    except (OSError, IndexError, ValueError):
        return 0.0, []


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used by ``pid`` and every descendant, live or already reaped."""
    total, pending = 0.0, [pid]
    while pending:
        seconds, children = _cpu_of(pending.pop())
        total += seconds
        pending += children
    return total


def service_pids(names: tuple[str, ...]) -> list[int]:
    """Pids of processes whose command name starts with one of ``names`` (e.g. redis-server)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip().startswith(names):
                        found.append(int(entry))
            except OSError:
                continue
    return found


class CpuMeter:
    """CPU per task, by process: this one (the scheduler side), the workers, Redis, PostgreSQL.

    On a machine where every core is busy this is where the time goes; the sum is the
    CPU cost of one task, the figure that bounds throughput.
    """

    SERVICES = {"redis": ("redis-server",), "postgres": ("postgres",), "rabbitmq": ("beam.smp",)}

    def __init__(self, worker_pids: list[int]):
        self.worker_pids = worker_pids
        self.before = self._sample()

    def _sample(self) -> dict[str, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        sample = {"scheduler": own.ru_utime + own.ru_stime,
                  "workers": sum(tree_cpu_seconds(pid) for pid in self.worker_pids)}
        for label, names in self.SERVICES.items():
            sample[label] = sum(_cpu_of(pid)[0] for pid in service_pids(names))
        return sample

    def per_task_ms(self, tasks: int) -> str:
        after = self._sample()
        parts = {label: (after[label] - self.before[label]) * 1000 / tasks for label in after}
        shown = "  ".join(f"{label} {ms:.2f}" for label, ms in parts.items() if ms >= 0.005)
        return f"CPU ms per task: {shown}  total {sum(parts.values()):.2f}"


def fork_floor_main(argv: list[str]) -> None:
    """Entry point of ``bench_celery.py --fork-floor DAG_FILE N``: what a try costs in a zygote.

    Two figures, each CPU per child with the page faults the child took. First, N no-op
    tries through a real zygote (the process a Celery pool process forks its tries from),
    measured from its ``/proc`` times: the worker-side cost of a try without Celery.
    Second, N children that exit at once, forked by this process after it was prepared as
    a zygote is (runner imported, the DAG loaded, the heap frozen): the floor any
    fork-per-try design pays on this machine, whatever the try does.
    """
    import socket
    from multiprocessing.connection import Connection

    from crossdock.models.taskinstancekey import TaskInstanceKey
    from crossdock.runner.command import task_run_command
    from crossdock.runner.dag_warmup import warm_dag_file
    from crossdock.runner.zygote import Zygote
    from crossdock.runner.zygote_client import ZygoteRunner

    dag_path, forks = argv[0], int(argv[1])

    def command(index: int) -> list[str]:
        return task_run_command(TaskInstanceKey("bench_noop", f"t{index}", "fork_floor", 1), subdir=dag_path)

    runner = ZygoteRunner()
    runner.run("warm-up", command(0))  # the zygote loads the DAG file
    zygote_pid = runner.zygote_pid
    before = _cpu_of(zygote_pid)[0]
    for index in range(forks):
        result = runner.run(index, command(index))
        if not result.succeeded:
            raise SystemExit(f"fork floor: a no-op try failed: {result.reason}")
    try_ms = (_cpu_of(zygote_pid)[0] - before) * 1000 / forks
    runner.close()

    owner_end, zygote_end = socket.socketpair()
    Zygote(Connection(zygote_end.detach()))._prepare_process()
    warm_dag_file(command(0))
    before, faults = _own_and_children_cpu(), 0
    for _index in range(forks):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        _pid, _status, usage = os.wait4(pid, 0)
        faults += usage.ru_minflt
    bare_ms = (_own_and_children_cpu() - before) * 1000 / forks
    print(f"  inside the zygote (no Celery): a no-op try {try_ms:.2f} ms CPU; of it, the floor of a fork "
          f"whose child exits at once: {bare_ms:.2f} ms ({faults / forks:.0f} page faults in the child)",
          flush=True)


def _own_and_children_cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def line(label: str, tasks: int, figures: dict, raw_rate: float | None) -> str:
    rate = tasks / figures["elapsed"]
    ratio = f"{rate / raw_rate:6.1%}" if raw_rate else "   n/a"
    lat = figures["latencies"]
    return (f"{label:<28} {rate:9.1f} tasks/s  ratio {ratio}  "
            f"queued->running p50 {percentile(lat, 0.5) * 1000:7.1f} ms  p95 {percentile(lat, 0.95) * 1000:7.1f} ms"
            + (f"  worker peak RSS {figures['worker_rss_mb']:.0f} MiB" if figures.get("worker_rss_mb") else ""))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--raw-worker"]:
        raw_worker_main(argv[1:])
        return 0
    if argv[:1] == ["--fork-floor"]:
        fork_floor_main(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="no-op tasks per mode")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS} tasks per mode")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: raw,executor,scheduler")
    parser.add_argument("--broker", default=None, help="default: a private Redis, db 0")
    parser.add_argument("--result-backend", default=None, help="default: the private Redis, db 1")
    parser.add_argument("--metadata-db", default=None, help="metadata DB URL (reset!); default: temp SQLite")
    parser.add_argument("--dag-size", type=int, default=None,
                        help="tasks in the DAG file of the executor-only mode (default: --tasks); a "
                             "small file shows the cost of everything but parsing the DAG")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="worker pool size")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks = QUICK_TASKS
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    with contextlib.ExitStack() as owned:
        if args.broker is None or args.result_backend is None:
            redis_url = owned.enter_context(own_redis_server())
            args.broker = args.broker or f"{redis_url}/0"
            args.result_backend = args.result_backend or f"{redis_url}/1"
        if args.metadata_db == "postgres":
            args.metadata_db = owned.enter_context(own_postgres_database())
        return run_benchmarks(args, modes)


def run_benchmarks(args, modes: list[str]) -> int:
    home = Path(tempfile.mkdtemp(prefix="crossdock-bench-"))
    dags = home / "dags"
    dags.mkdir()
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    os.environ.update({
        "CROSSDOCK_HOME": str(home),
        "CROSSDOCK__CORE__DAGS_FOLDER": str(dags),
        "CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "CROSSDOCK__CORE__DEFAULT_QUEUE": queue,
        "CROSSDOCK__CORE__PARALLELISM": "512",
        "CROSSDOCK__CORE__MAX_ACTIVE_TASKS_PER_DAG": "512",
        "CROSSDOCK__CORE__DEFAULT_POOL_SLOTS": "1024",
        "CROSSDOCK__CELERY__BROKER_URL": args.broker,
        "CROSSDOCK__CELERY__RESULT_BACKEND": args.result_backend,
        "CROSSDOCK__CELERY__WORKER_CONCURRENCY": str(args.concurrency),
        "CROSSDOCK__LOGGING__LOGGING_LEVEL": "WARNING",
    })
    if args.metadata_db:
        os.environ["CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN"] = args.metadata_db
    from crossdock import database
    from crossdock.configuration import conf

    conf.reload()
    if args.metadata_db:
        database.reset()
    else:
        database.migrate()
    dag_path = write_dag(dags, "bench_noop", args.tasks)
    if args.dag_size:
        # Inside the DAGs folder (workers run only DAG files there), hidden from its parser.
        small = dags / ".executor_only"
        small.mkdir()
        executor_dag_path = write_dag(small, "bench_noop", args.dag_size)
    else:
        executor_dag_path = dag_path

    print(f"{args.tasks} no-op tasks per mode; broker {args.broker}; result backend {args.result_backend}; "
          f"prefork pool of {args.concurrency}; {os.cpu_count()} cpus")
    raw_rate = None
    results = {}
    if "raw" in modes:
        results["raw"] = bench_raw(args, queue + "-raw")
        raw_rate = args.tasks / results["raw"]["elapsed"]
        print(line("raw celery", args.tasks, results["raw"], None), flush=True)
        print(f"  {results['raw']['cpu']}", flush=True)
    crossdock_modes = [mode for mode in modes if mode in ("executor", "scheduler")]
    if crossdock_modes:
        from crossdock.executors.celery_worker import start_embedded_workers

        workers = start_embedded_workers(queues=[queue], concurrency=args.concurrency, hostname_prefix="bench")
        try:
            if "executor" in crossdock_modes:
                meter = CpuMeter([p.pid for p in workers.processes])
                results["executor"] = bench_executor(args, executor_dag_path, queue)
                results["executor"]["cpu"] = meter.per_task_ms(args.tasks)
                results["executor"]["worker_rss_mb"] = max(process_tree_peak_rss_mb(p.pid)
                                                           for p in workers.processes)
                label = f"crossdock executor only{f' (DAG of {args.dag_size})' if args.dag_size else ''}"
                print(line(label, args.tasks, results["executor"], raw_rate), flush=True)
                print(f"  {results['executor']['cpu']}", flush=True)
            if "scheduler" in crossdock_modes:
                meter = CpuMeter([p.pid for p in workers.processes])
                results["scheduler"] = bench_scheduler(args, dags)
                results["scheduler"]["cpu"] = meter.per_task_ms(args.tasks)
                results["scheduler"]["worker_rss_mb"] = max(process_tree_peak_rss_mb(p.pid)
                                                            for p in workers.processes)
                print(line("crossdock scheduler+executor", args.tasks, results["scheduler"], raw_rate)
                      + f"  run {results['scheduler']['run_state']} {results['scheduler']['states']}",
                      flush=True)
                print(f"  {results['scheduler']['cpu']}", flush=True)
        finally:
            workers.stop()
        subprocess.run([sys.executable, __file__, "--fork-floor", str(dag_path), str(min(args.tasks, 1000))],
                       check=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"scheduler (this process) peak RSS {usage.ru_maxrss / 1024:.0f} MiB, "
          f"CPU {usage.ru_utime + usage.ru_stime:.1f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
