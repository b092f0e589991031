"""Warm pods benchmark: cold vs warm pods of the KubernetesExecutor on the local pod runtime, in one run.

For each mode (``cold``: ``warm_pool_size = 0``, today's behaviour; ``warm``:
``warm_pool_size = --pool``), in a fresh process, a fresh SQLite home and a local pod
runtime of its own, a scheduler runs

* ``chain``: a chain of ``--links`` ``BashOperator("true")`` pod tasks, one after the other;
  per link: wall time / links, the steady state (first link's end to the last one's, per
  link), the median gap between one task's end and the next one's start, and the median
  time a task is running (a warm try counts as running from its assignment);
* ``burst``: ``--burst`` independent such tasks at once; queued → running and queued →
  done p50/p95, and pods/s;
* ``solo``: single-task runs, each after the pool settled (a sporadic task): queued → done.

The chain runs first, so in ``warm`` mode its first task starts cold and makes the profile
recent; the burst then finds ``--pool`` warm pods (more tasks than that start cold). Also
printed: resident memory of an idle warm pod's process (the cost of keeping one).

    python bench/bench_warm_pods.py [--links 20] [--burst 40] [--pool 2] [--parallelism 16]
        [--real-kubeconfig PATH]   # default $CROSSDOCK_TEST_REAL_KUBECONFIG: also on the real API
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_kubernetes_executor import fresh_pod_bench_home, percentile, start_runtime_process  # noqa: E402

DEFAULT_LINKS = 20
DEFAULT_BURST = 40
DEFAULT_POOL = 2
DEFAULT_PARALLELISM = 16
RUN_LIMIT_SECONDS = 600
#: Pause between the chain and the burst, so the burst meets a full pool.
SETTLE_SECONDS = 1.5
#: Single-task runs, each after the pool settled: the latency of a sporadic task.
SOLO_RUNS = 5
WARM_ENTRY = "crossdock.runner.warm_pod"


def setup_home(links: int, burst: int, parallelism: int, pool: int, kubeconfig: str) -> Path:
    home = fresh_pod_bench_home(prefix="crossdock-warmbench-", parallelism=parallelism,
                                KUBERNETES_EXECUTOR__CONFIG_FILE=kubeconfig,
                                KUBERNETES_EXECUTOR__WARM_POOL_SIZE=str(pool),
                                KUBERNETES_EXECUTOR__WARM_POOL_MAX=str(max(pool, 1) * 4))
    (home / "dags").mkdir()
    (home / "dags" / "warmbench.py").write_text(textwrap.dedent(f"""
        from crossdock import DAG, BashOperator

        with DAG("chain", max_active_tasks={parallelism}) as chain:
            previous = None
            for number in range({links}):
                task = BashOperator(task_id=f"link{{number:02d}}", bash_command="true", queue="kubernetes")
                if previous is not None:
                    previous >> task
                previous = task

        with DAG("solo") as solo:
            BashOperator(task_id="only", bash_command="true", queue="kubernetes")

        with DAG("burst", max_active_tasks={parallelism}) as burst:
            for number in range({burst}):
                BashOperator(task_id=f"t{{number}}", bash_command="true", queue="kubernetes")
    """))
    from crossdock import database
    from crossdock.configuration import conf

    conf.reload()
    database.migrate()
    return home


def median_ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 1) if values else None


def idle_warm_pod_rss_mib() -> float | None:
    """Resident memory of the largest idle warm pod process on this machine (VmRSS)."""
    best = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if WARM_ENTRY not in (entry / "cmdline").read_bytes().decode(errors="replace"):
                continue
            match = re.search(r"^VmRSS:\s+(\d+) kB", (entry / "status").read_text(), re.MULTILINE)
        except OSError:
            continue
        if match:
            best = max(best or 0.0, int(match.group(1)) / 1024)
    return best


def run_dags(job, runs: list[tuple[str, str]], *, between) -> dict[str, float]:
    """Run ``runs`` (dag id, run id) one after the other with one scheduler; each one's wall time by run id.

    ``between()`` is called after each run but the last (the pool settles, figures are read).
    """
    from crossdock.database import create_session
    from crossdock.scheduler.dag_runs import create_dag_run

    deadline = time.monotonic() + RUN_LIMIT_SECONDS
    walls: dict[str, float] = {}
    pending = list(runs)
    current: list[tuple[str, float]] = []

    def stop_when(job) -> bool:
        if time.monotonic() > deadline:
            return True
        if current and not job.runs and job.loop_count > 2:
            run_id, started = current.pop()
            walls[run_id] = time.perf_counter() - started
            if pending:
                between()
        if not current:
            if not pending:
                return True
            dag_id, run_id = pending.pop(0)
            with create_session() as session:
                create_dag_run(session, dag_id=dag_id, run_id=run_id)
            current.append((run_id, time.perf_counter()))
        return False

    job.run(stop_when=stop_when)
    return walls


def task_rows(dag_id: str):
    from sqlalchemy import select

    from crossdock.database import create_session
    from crossdock.models import TaskInstance

    with create_session() as session:
        return session.execute(select(TaskInstance.task_id, TaskInstance.state, TaskInstance.queued_dttm,
                                      TaskInstance.start_date, TaskInstance.end_date, TaskInstance.hostname)
                               .where(TaskInstance.dag_id == dag_id).order_by(TaskInstance.task_id)).all()


def start_pods_api(workdir: Path, links: int, burst: int, parallelism: int, pool: int,
                   real_kubeconfig: str | None) -> tuple[subprocess.Popen, str, Path]:
    """(runtime or agent process, kubeconfig, home): the local pod runtime, or the real
    kube-apiserver in a namespace of its own with our node agent running its pods."""
    if not real_kubeconfig:
        process, info = start_runtime_process(workdir / "runtime")
        return process, info["kubeconfig"], setup_home(links, burst, parallelism, pool, info["kubeconfig"])
    import uuid

    from kubernetes import client, config

    from crossdock.configuration import conf

    home = setup_home(links, burst, parallelism, pool, real_kubeconfig)
    # This kube-apiserver reads node logs without client credentials (as the tests' one does).
    os.environ["CROSSDOCK__KUBERNETES_LOCAL_RUNTIME__KUBELET_ANONYMOUS_LOG_READS"] = "True"
    namespace = f"warmbench-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(config.new_client_from_config(config_file=real_kubeconfig)).create_namespace(
        {"metadata": {"name": namespace}})
    os.environ["CROSSDOCK__KUBERNETES_EXECUTOR__NAMESPACE"] = namespace
    conf.reload()
    process, _ = start_runtime_process(workdir / "agent", "--agent-only", "--kubeconfig", real_kubeconfig,
                                       "--namespace", namespace, "--node-name", f"node-{namespace}")
    return process, real_kubeconfig, home


def run_mode(mode: str, args) -> dict:
    from kubernetes import config

    workdir = Path(tempfile.mkdtemp(prefix="crossdock-warmbench-rt-"))
    pool = args.pool if mode == "warm" else 0
    real = args.real_kubeconfig if args.target == "real" else None
    process, kubeconfig, home = start_pods_api(workdir, args.links, args.burst, args.parallelism, pool, real)
    info = {"kubeconfig": kubeconfig}
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.database import create_session
    from crossdock.executors.kubernetes_executor import KubernetesExecutor
    from crossdock.scheduler.scheduler_job import SchedulerJob

    result = parse_dag_folder(str(home / "dags"))
    with create_session() as session:
        sync_parse_result_to_db(result, session)
    executor = KubernetesExecutor(api_client=config.new_client_from_config(config_file=info["kubeconfig"]))
    try:
        rss: list[float | None] = []

        def settle() -> None:  # let the pool fill (warm pods imported and watching), then weigh one
            settle_until = time.monotonic() + SETTLE_SECONDS
            while time.monotonic() < settle_until:
                executor.sync()
                time.sleep(0.05)
            rss.append(idle_warm_pod_rss_mib())

        runs = [("chain", "chain"), ("burst", "burst"), *(("solo", f"solo{n}") for n in range(SOLO_RUNS))]
        walls = run_dags(SchedulerJob(executors=[executor], parse_dags=False), runs, between=settle)
        chain_wall, burst_wall, warm_rss = walls.get("chain", float("nan")), walls.get("burst", float("nan")), rss[0]
        assignments = executor.__dict__.get("warm_assignments", 0)
    finally:
        executor.end()
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    chain, burst, solo = task_rows("chain"), task_rows("burst"), task_rows("solo")
    from crossdock import database

    database.dispose_engine()
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)
    gaps = [(nxt.start_date - row.end_date).total_seconds() for row, nxt in zip(chain, chain[1:])
            if nxt.start_date and row.end_date]
    waits = [(row.start_date - row.queued_dttm).total_seconds() for row in burst if row.start_date and row.queued_dttm]
    # a warm try is reported running when its pod is assigned; queued → done is what a user waits
    done = [(row.end_date - row.queued_dttm).total_seconds() for row in burst if row.end_date and row.queued_dttm]
    hosts = [row.hostname or "" for row in chain + burst + solo]
    return {
        "target": args.target, "mode": mode, "pool": pool,
        "chain_ok": sum(row.state == "success" for row in chain), "links": len(chain),
        "link_wall_ms": round(chain_wall / max(1, len(chain)) * 1000, 1),
        # steady state: from the first link's end to the last one's, per link (the first link starts cold
        # in both modes, and in the warm one it also starts the pool)
        "link_steady_ms": round((chain[-1].end_date - chain[0].end_date).total_seconds() / (len(chain) - 1) * 1000, 1)
        if len(chain) > 1 and chain[-1].end_date and chain[0].end_date else None,
        "link_gap_p50_ms": round(statistics.median(gaps) * 1000, 1) if gaps else None,
        "link_queued_to_running_p50_ms": median_ms([(r.start_date - r.queued_dttm).total_seconds() for r in chain
                                                    if r.start_date and r.queued_dttm]),
        "link_running_p50_ms": median_ms([(r.end_date - r.start_date).total_seconds() for r in chain
                                          if r.start_date and r.end_date]),
        "chain_in_warm_pods": sum((r.hostname or "").startswith("warm-") for r in chain),
        "warm_link_q_to_done_p50_ms": median_ms([(r.end_date - r.queued_dttm).total_seconds() for r in chain
                                                 if r.end_date and r.queued_dttm
                                                 and (r.hostname or "").startswith("warm-")]),
        "cold_link_q_to_done_p50_ms": median_ms([(r.end_date - r.queued_dttm).total_seconds() for r in chain
                                                 if r.end_date and r.queued_dttm
                                                 and not (r.hostname or "").startswith("warm-")]),
        "burst_ok": sum(row.state == "success" for row in burst), "burst": len(burst),
        "burst_q_to_run_p50_ms": round(percentile(waits, 0.5) * 1000, 1),
        "burst_q_to_run_p95_ms": round(percentile(waits, 0.95) * 1000, 1),
        "burst_q_to_done_p50_ms": round(percentile(done, 0.5) * 1000, 1),
        "burst_q_to_done_p95_ms": round(percentile(done, 0.95) * 1000, 1),
        "burst_pods_per_s": round(len(burst) / burst_wall, 2),
        "solo_q_to_done_p50_ms": median_ms([(r.end_date - r.queued_dttm).total_seconds() for r in solo
                                            if r.end_date and r.queued_dttm]),
        "solo_in_warm_pods": sum((r.hostname or "").startswith("warm-") for r in solo),
        "tasks_in_warm_pods": sum(host.startswith("warm-") for host in hosts),
        "warm_assignments": assignments,
        "distinct_pods": len(set(hosts)), "tasks": len(hosts),
        "idle_warm_pod_rss_mib": round(warm_rss, 1) if warm_rss else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=DEFAULT_LINKS)
    parser.add_argument("--burst", type=int, default=DEFAULT_BURST)
    parser.add_argument("--pool", type=int, default=DEFAULT_POOL)
    parser.add_argument("--parallelism", type=int, default=DEFAULT_PARALLELISM)
    parser.add_argument("--real-kubeconfig", default=os.environ.get("CROSSDOCK_TEST_REAL_KUBECONFIG"),
                        help="also run on this real kube-apiserver, with our node agent running the pods")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--target", default="local", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_mode(args.child, args)))
        return 0
    results = []
    targets = ["local", "real"] if args.real_kubeconfig else ["local"]
    for target in targets:
        for mode in ("cold", "warm"):
            print(f"running the {mode} mode on the {target} API ...", file=sys.stderr, flush=True)
            command = [sys.executable, __file__, "--child", mode, "--target", target, "--links", str(args.links),
                       "--burst", str(args.burst), "--pool", str(args.pool), "--parallelism", str(args.parallelism)]
            if args.real_kubeconfig:
                command += ["--real-kubeconfig", args.real_kubeconfig]
            done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_LIMIT_SECONDS * 2 + 120)
            line = next((line for line in reversed(done.stdout.splitlines()) if line.startswith("{")), None)
            if line is None:
                tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
                results.append({"target": target, "mode": mode, "error": f"exit {done.returncode}: {' | '.join(tail)}"})
                continue
            results.append(json.loads(line))
    print(f"chain of {args.links} pod tasks, burst of {args.burst}, pool {args.pool}, parallelism "
          f"{args.parallelism}, {os.cpu_count()} cores; local pod runtime"
          + (" and the real kube-apiserver with our node agent" if args.real_kubeconfig else ""))
    for result in results:
        print(json.dumps(result))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
