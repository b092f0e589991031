"""What the web server answers how fast while the scheduler works, and what it costs the scheduler.

The database holds 100 DAGs (98 small ones with a finished run each, a 1,000-task DAG with
one finished run, and a 500-task fan-out). Each round triggers the 500-task fan-out and
runs a scheduler (LocalExecutor, SQLite unless --postgres) until the run ends, in three
modes alternated in one run:

* ``down``: no web server;
* ``thread``: the web server on a thread of the scheduler's process (as ``crossdock standalone`` runs it);
* ``process``: the web server as its own process (as ``crossdock webserver`` runs it).

With the server up, one client process calls it the whole time, back to back unless
``--pause`` says how long to wait after each call (a browser polls every few seconds),
alternating ``GET /api/v1/dags`` (a page of 100 DAGs with their recent runs) and the 1,000-task run's
``GET .../taskInstances?limit=1000``. Prints, per mode, the median over rounds of the
scheduler's wall time and tasks/s, and the latency p50/p95 of each call.

    python bench/bench_webserver.py [--rounds 2] [--tasks 500] [--pause 0] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scheduler import percentile, run_dag, setup_home  # noqa: E402

SMALL_DAGS = 98
BIG_TASKS = 1000
MODES = ("down", "thread", "process")


def write_dags(home: Path, *, tasks: int) -> None:
    (home / "dags" / "bench_web_dags.py").write_text(textwrap.dedent(f"""
        from crossdock import DAG, PythonOperator

        def noop():
            pass

        for n in range({SMALL_DAGS}):
            with DAG(f"small_{{n:03d}}", tags=["bench", f"group{{n % 5}}"]) as dag:
                a = PythonOperator(task_id="extract", python_callable=noop)
                a >> [PythonOperator(task_id="transform", python_callable=noop),
                      PythonOperator(task_id="load", python_callable=noop)]
            globals()[dag.dag_id] = dag

        with DAG("bench_thousand", max_active_tasks=64) as thousand:
            for i in range({BIG_TASKS}):
                PythonOperator(task_id=f"t{{i:04d}}", python_callable=noop)

        with DAG("bench_fan_out", max_active_tasks=64) as fan_out:
            for i in range({tasks}):
                PythonOperator(task_id=f"f{{i:04d}}", python_callable=noop)
    """))


def seed() -> str:
    """Parse, run the 98 small DAGs once and the 1,000-task DAG once; the big run's id."""
    from crossdock.database import create_session
    from crossdock.executors.executor_loader import load_executors
    from crossdock.operations.dag_parsing import parse_dags_folder_into_db
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    errors = parse_dags_folder_into_db()
    assert not errors, errors
    with create_session() as session:
        for n in range(SMALL_DAGS):
            create_dag_run(session, dag_id=f"small_{n:03d}")
    job = SchedulerJob(executors=load_executors("LocalExecutor"), parse_dags=False)
    job.run(stop_when=lambda j: j.loop_count > 1 and not j.runs)
    started = time.perf_counter()
    _, tis = run_dag("bench_thousand")
    print(f"seeded: {SMALL_DAGS} small runs, a {len(tis)}-task run in {time.perf_counter() - started:.1f} s",
          flush=True)
    return tis[0].run_id


# -- the client: a separate process so its own work does not land on the scheduler ----------------
def client_main(url: str, run_id: str, out: str, pause: str = "0") -> None:
    import httpx

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    calls = {"dags": (f"{url}/api/v1/dags", {"limit": 100}),
             "task_list": (f"{url}/api/v1/dags/bench_thousand/dagRuns/{run_id}/taskInstances", {"limit": 1000})}
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            for name, (path, params) in calls.items():
                started = time.perf_counter()
                response = client.get(path, params=params)
                latencies[name].append(time.perf_counter() - started)
                response.raise_for_status()
                if name == "dags":
                    assert response.json()["total_entries"] == 100, response.json()["total_entries"]
                else:
                    assert len(response.json()["task_instances"]) == BIG_TASKS
                stop.wait(float(pause))
    Path(out).write_text(json.dumps(latencies))


def start_client(url: str, run_id: str, pause: float) -> tuple[subprocess.Popen, str]:
    out = tempfile.mktemp(suffix=".json", prefix="bench-web-client-")
    process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--client", url, run_id, out, str(pause)])
    return process, out


def stop_client(process: subprocess.Popen, out: str) -> dict[str, list[float]]:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, "the client failed"
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    return data


def start_server_process() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "crossdock", "webserver", "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    return process, line.split("webserver at ", 1)[1].split()[0]


def run_round(mode: str, big_run: str, pause: float) -> dict:
    from crossdock.www.server import WebServer

    server, server_process, client = None, None, None
    if mode == "thread":
        server = WebServer(host="127.0.0.1", port=0).start()
        url = server.url
    elif mode == "process":
        server_process, url = start_server_process()
    if mode != "down":
        client = start_client(url, big_run, pause)
        time.sleep(1.0)  # the client is calling before the run starts
    try:
        wall, tis = run_dag("bench_fan_out")
    finally:
        latencies = stop_client(*client) if client else {}
        if server is not None:
            server.stop()
        if server_process is not None:
            server_process.send_signal(signal.SIGTERM)
            server_process.wait(timeout=30)
    ok = sum(ti.state == "success" for ti in tis)
    result = {"wall_s": wall, "tasks_per_s": ok / wall, "succeeded": ok}
    for name, values in latencies.items():
        result[f"{name}_p50_ms"] = statistics.median(values) * 1000
        result[f"{name}_p95_ms"] = percentile(values, 0.95) * 1000
        result[f"{name}_calls"] = len(values)
    return result


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(*sys.argv[2:6])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500, help="tasks of the fan-out the scheduler runs")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the three modes, alternated")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL (a database of its own) instead of SQLite")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds the client waits after each call (default 0: back to back)")
    args = parser.parse_args()
    if args.postgres:
        from bench_services import own_postgres_database

        with own_postgres_database() as url:
            return bench(args, "postgresql", url)
    return bench(args, "sqlite", None)


def bench(args, backend: str, url: str | None) -> int:
    home = setup_home(backend, url)
    write_dags(home, tasks=args.tasks)
    big_run = seed()
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            results[mode].append(run_round(mode, big_run, args.pause))
            print(f"  {mode}: {results[mode][-1]['tasks_per_s']:.1f} tasks/s", flush=True)
    print(f"{args.tasks}-task fan-out on the LocalExecutor, {backend}, 100 DAGs stored; medians of "
          f"{args.rounds} alternated rounds; with the server up one client calls it "
          + (f"with {args.pause:g} s between calls" if args.pause else "back to back"))
    for mode, runs in results.items():
        med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        line = f"webserver {mode:>7}: scheduler {med['wall_s']:.2f} s, {med['tasks_per_s']:.1f} tasks/s"
        if mode != "down":
            line += (f"; GET /dags (100) p50 {med['dags_p50_ms']:.1f} ms p95 {med['dags_p95_ms']:.1f} ms; "
                     f"1,000-task list p50 {med['task_list_p50_ms']:.1f} ms p95 {med['task_list_p95_ms']:.1f} ms "
                     f"({med['dags_calls'] + med['task_list_calls']:.0f} calls)")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
