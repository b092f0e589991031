"""KubernetesExecutor benchmark: N short tasks through the scheduler, a pod each, against no-pod baselines.

For each path, in a fresh process and a fresh SQLite home, one DAG of N independent
``BashOperator("true")`` tasks is triggered and run to the end by a scheduler:

* ``kubernetes``: the KubernetesExecutor against the local pod runtime (started as its
  own process: the pods API and a node agent that runs each pod as a local process);
* ``kubernetes-real``: the same against the real kube-apiserver with our node agent
  (when ``--real-kubeconfig`` or ``CROSSDOCK_TEST_REAL_KUBECONFIG`` names one);
* ``local``: the LocalExecutor (a fork per task, no pod) - the floor;
* ``celery``: the CeleryExecutor with embedded workers (no server), when available.

Printed per path: wall time trigger → run finished, tasks/s, API calls per task (the
executor's own, counted on its client; and every request the local API served),
p50/p95 of queued → running (as the scheduler recorded them), peak RSS of the
scheduler process and of the runtime process.

    python bench/bench_kubernetes_executor.py [--tasks 500] [--parallelism 32] [--paths kubernetes,local,celery]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

DEFAULT_TASKS = 500
DEFAULT_PARALLELISM = 32
REAL_KUBECONFIG_ENV = "CROSSDOCK_TEST_REAL_KUBECONFIG"
RUN_LIMIT_SECONDS = 1800
ALL_PATHS = ("kubernetes", "kubernetes-real", "local", "celery")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def vm_hwm_mib(pid: int) -> float | None:
    """Peak resident memory of a live process (VmHWM)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


# -- one path, in a child process --------------------------------------------------------------
def fresh_pod_bench_home(*, prefix: str, parallelism: int, **settings: str) -> Path:
    """A new CROSSDOCK_HOME made this process's, with no CROSSDOCK__ setting but the bench's own
    (pods share this machine's environment; ``settings`` are more ``SECTION__KEY`` values)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    for name in [n for n in os.environ if n.startswith("CROSSDOCK__")]:
        del os.environ[name]
    os.environ["CROSSDOCK_HOME"] = str(home)
    os.environ.update({
        "CROSSDOCK__CORE__DAGS_FOLDER": str(home / "dags"),
        "CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "CROSSDOCK__CORE__PARALLELISM": str(parallelism),
        "CROSSDOCK__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(parallelism),
        "CROSSDOCK__SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0.05",
        "CROSSDOCK__SCHEDULER__DAG_DIR_LIST_INTERVAL": "0",
        "CROSSDOCK__KUBERNETES_EXECUTOR__SHARE_LOCAL_ENVIRONMENT": "True",
        "CROSSDOCK__KUBERNETES_EXECUTOR__WORKER_PODS_CREATION_BATCH_SIZE": str(parallelism),
        **{f"CROSSDOCK__{key}": value for key, value in settings.items()},
    })
    return home


def setup_home(tasks: int, parallelism: int) -> Path:
    home = fresh_pod_bench_home(prefix="crossdock-kbench-", parallelism=parallelism)
    (home / "dags").mkdir()
    (home / "dags" / "bench.py").write_text(textwrap.dedent(f"""
        from crossdock import DAG, BashOperator

        with DAG("bench", max_active_tasks={parallelism}) as dag:
            for number in range({tasks}):
                BashOperator(task_id=f"t{{number}}", bash_command="true", queue="kubernetes")
    """))
    from crossdock import database
    from crossdock.configuration import conf

    conf.reload()
    database.migrate()
    return home


def start_runtime_process(workdir: Path, *args: str) -> tuple[subprocess.Popen, dict[str, str]]:
    command = [sys.executable, "-m", "crossdock.cli.kubernetes_command", "local-runtime",
               "--state-dir", str(workdir), *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    info: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the local pod runtime exited before it was ready")
        if line.startswith("pods API on "):
            info["url"] = line.split()[-1]
        elif line.startswith("kubeconfig "):
            info["kubeconfig"] = line.split(" ", 1)[1].strip()
        elif line.startswith("node agent "):
            info["agent"] = line.strip()
        if "kubeconfig" in info or "agent" in info:
            return process, info
    raise RuntimeError("the local pod runtime did not start in time")


def served(kubeconfig: str) -> int:
    """Requests the local API has served so far (asked with its kubeconfig's token)."""
    from kubernetes import config

    from crossdock.kubernetes.local_runtime.hook_client import runtime_request

    _, stats = runtime_request(config.new_client_from_config(config_file=kubeconfig), "GET", "/_crossdock/stats")
    return int(stats["requestsServed"])


def make_executor(path: str, workdir: Path, real_kubeconfig: str | None):
    """(executor, cleanup, runtime pid, local runtime's kubeconfig) for one path."""
    if path == "local":
        from crossdock.executors.local_executor import LocalExecutor

        return LocalExecutor(), (lambda: None), None, None
    if path == "celery":
        from crossdock.executors.celery_executor import CeleryExecutor
        from crossdock.executors.celery_worker import start_embedded_workers

        workers = start_embedded_workers(queues=["kubernetes"], concurrency=2, count=2)
        return CeleryExecutor(), (lambda: workers.stop(timeout=10)), None, None
    from kubernetes import client, config

    from crossdock.configuration import conf
    from crossdock.executors.kubernetes_executor import KubernetesExecutor

    if path == "kubernetes":
        process, info = start_runtime_process(workdir / "runtime")
        api_client = config.new_client_from_config(config_file=info["kubeconfig"])
        url = info["kubeconfig"]
    else:
        api_client = config.new_client_from_config(config_file=real_kubeconfig)
        namespace = f"kbench-{uuid.uuid4().hex[:6]}"
        client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
        os.environ["CROSSDOCK__KUBERNETES_EXECUTOR__NAMESPACE"] = namespace
        conf.reload()
        process, info = start_runtime_process(workdir / "agent", "--agent-only", "--kubeconfig", real_kubeconfig,
                                              "--namespace", namespace, "--node-name", f"node-{namespace}")
        url = None

    def cleanup() -> None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()

    return KubernetesExecutor(api_client=api_client), cleanup, process.pid, url


def run_path(path: str, tasks: int, parallelism: int, real_kubeconfig: str | None) -> dict:
    home = setup_home(tasks, parallelism)
    from sqlalchemy import select

    from crossdock.database import create_session
    from crossdock.models import DagRun, TaskInstance
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    executor, cleanup, runtime_pid, url = make_executor(path, home, real_kubeconfig)
    try:
        job = SchedulerJob(executors=[executor])
        served_before = served(url) if url else None
        started = time.perf_counter()
        deadline = time.monotonic() + RUN_LIMIT_SECONDS
        triggered = []

        def stop_when(job) -> bool:
            if not triggered:
                with create_session() as session:
                    create_dag_run(session, dag_id="bench", run_id="bench")
                triggered.append(time.perf_counter())
                return False
            return (not job.runs and job.loop_count > 2) or time.monotonic() > deadline

        job.run(stop_when=stop_when)
        wall = time.perf_counter() - triggered[0]
        runtime_rss = vm_hwm_mib(runtime_pid) if runtime_pid else None
        served_after = served(url) if url else None
    finally:
        cleanup()
    with create_session() as session:
        run_state = session.scalars(select(DagRun.state).where(DagRun.dag_id == "bench")).one()
        rows = session.execute(select(TaskInstance.state, TaskInstance.queued_dttm, TaskInstance.start_date)
                               .where(TaskInstance.dag_id == "bench")).all()
    from crossdock import database

    database.dispose_engine()
    shutil.rmtree(home, ignore_errors=True)
    waits = [(start - queued).total_seconds() for _state, queued, start in rows if queued and start]
    succeeded = sum(1 for state, _q, _s in rows if state == "success")
    figures = {
        "path": path, "tasks": tasks, "succeeded": succeeded, "run_state": run_state,
        "wall_seconds": round(wall, 3), "tasks_per_second": round(tasks / wall, 2),
        "queued_to_running_p50_ms": round(percentile(waits, 0.5) * 1000, 1),
        "queued_to_running_p95_ms": round(percentile(waits, 0.95) * 1000, 1),
        "scheduler_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "runtime_peak_rss_mib": round(runtime_rss, 1) if runtime_rss else None,
        "setup_seconds": round(triggered[0] - started, 3),
    }
    counter = getattr(executor, "api_calls", None)
    if counter is not None:
        figures["executor_api_calls_per_task"] = round(counter.calls / tasks, 2)
        figures["executor_api_calls_by_method"] = dict(counter.by_method)
    if served_before is not None and served_after is not None:
        figures["api_requests_served_per_task"] = round((served_after - served_before) / tasks, 2)
    return figures


# -- the parent ----------------------------------------------------------------------------------
def run_in_child(path: str, args) -> dict:
    command = [sys.executable, __file__, "--child", path, "--tasks", str(args.tasks),
               "--parallelism", str(args.parallelism)]
    if args.real_kubeconfig:
        command += ["--real-kubeconfig", args.real_kubeconfig]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_LIMIT_SECONDS + 120)
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
    return {"path": path, "error": f"exit {result.returncode}: {' | '.join(tail)}"}


def available(path: str, args) -> str | None:
    """Why a path cannot run here, or None."""
    if path == "kubernetes-real" and not args.real_kubeconfig:
        return f"no real kube-apiserver ({REAL_KUBECONFIG_ENV} unset)"
    if path == "celery":
        try:
            import crossdock.executors.celery_executor  # noqa: F401
            import crossdock.executors.celery_worker  # noqa: F401
        except ImportError as exc:
            return f"celery executor not available: {exc}"
    return None


def print_table(results: list[dict]) -> None:
    columns = [("path", "path"), ("ok", "succeeded"), ("wall s", "wall_seconds"), ("tasks/s", "tasks_per_second"),
               ("calls/task", "executor_api_calls_per_task"), ("served/task", "api_requests_served_per_task"),
               ("q→run p50 ms", "queued_to_running_p50_ms"), ("q→run p95 ms", "queued_to_running_p95_ms"),
               ("sched RSS MiB", "scheduler_peak_rss_mib"), ("runtime RSS MiB", "runtime_peak_rss_mib")]
    print("  ".join(f"{title:>15}" for title, _ in columns))
    for result in results:
        if "error" in result or "skipped" in result:
            print(f"{result['path']:>15}  {result.get('error') or result.get('skipped')}")
            continue
        print("  ".join(f"{str(result.get(key, '-') if result.get(key) is not None else '-'):>15}"
                        for _, key in columns))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS)
    parser.add_argument("--parallelism", type=int, default=DEFAULT_PARALLELISM)
    parser.add_argument("--paths", default="kubernetes,kubernetes-real,local,celery",
                        help=f"comma-separated, from {', '.join(ALL_PATHS)}")
    parser.add_argument("--real-kubeconfig", default=os.environ.get(REAL_KUBECONFIG_ENV))
    parser.add_argument("--json", action="store_true", help="also print every figure as JSON")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_path(args.child, args.tasks, args.parallelism, args.real_kubeconfig)))
        return 0
    results = []
    for path in [p.strip() for p in args.paths.split(",") if p.strip()]:
        reason = available(path, args)
        if reason:
            results.append({"path": path, "skipped": reason})
            continue
        print(f"running {args.tasks} tasks on the {path} path ...", file=sys.stderr, flush=True)
        results.append(run_in_child(path, args))
    print(f"{args.tasks} tasks of BashOperator('true'), parallelism {args.parallelism}, {os.cpu_count()} cores")
    print_table(results)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
