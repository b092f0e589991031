"""Benchmark of the local pod runtime, side by side with a real kube-apiserver + our node agent.

For each tier: N pods running ``true`` are created back to back through the official client;
a watch records when each is first seen Running and Succeeded. Printed per tier:
pods/s (first create to last Succeeded), p50/p95 create→Running and create→Succeeded (under
that burst, so they include queueing), the same p50s for pods run one at a time,
API requests per pod (made by the node agent; on the local tier also all requests the API
served, the benchmark's own included), and the peak RSS (VmHWM) of the API server and the
agent, each run as its own process.

    python bench/bench_pod_runtime.py --pods 100
    python bench/bench_pod_runtime.py --pods 100 --real-kubeconfig PATH   # default: $CROSSDOCK_TEST_REAL_KUBECONFIG

The real tier's API figures are the kube-apiserver's (etcd's shown apart); its peak RSS is
since that server started, so run it fresh (``KUBE_APISERVER_FRESH=1``) for a clean figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from kubernetes import client, config
from kubernetes.watch.watch import iter_resp_lines

from crossdock.kubernetes.local_runtime.hook_client import agent_request, runtime_request

DEFAULT_PODS = 50
#: Pods run one after another for the latency figures without queueing.
SINGLE_PODS = 10
REAL_KUBECONFIG_ENV = "CROSSDOCK_TEST_REAL_KUBECONFIG"
RUN_TIMEOUT = 600.0
STARTUP_TIMEOUT = 30.0


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def runtime_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "crossdock.cli.kubernetes_command", "local-runtime", *args]


def wait_for_line(process: subprocess.Popen, prefix: str) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                raise RuntimeError(f"process exited with {process.returncode} before printing {prefix!r}")
            continue
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError(f"no {prefix!r} line within {STARTUP_TIMEOUT}s")


def agent_stats(core: client.CoreV1Api, node_name: str) -> dict:
    node = json.loads(core.read_node(node_name, _preload_content=False).data)
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    _, stats = agent_request(core.api_client, "127.0.0.1", port, "/_crossdock/stats")  # the agent's token
    return stats


def run_pods(core: client.CoreV1Api, namespace: str, pods: int) -> dict:
    run_id = uuid.uuid4().hex[:6]
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    done: dict[str, float] = {}
    failed: list[str] = []
    finished = threading.Event()
    start_rv = json.loads(core.list_namespaced_pod(namespace, limit=1, _preload_content=False).data)[
        "metadata"]["resourceVersion"]

    def watch() -> None:
        response = core.list_namespaced_pod(namespace, label_selector=f"bench={run_id}", watch=True,
                                            resource_version=start_rv, timeout_seconds=int(RUN_TIMEOUT),
                                            _preload_content=False)
        for line in iter_resp_lines(response):
            if not line:
                continue
            event = json.loads(line)
            pod = event["object"]
            name, phase, now = pod["metadata"]["name"], pod.get("status", {}).get("phase"), time.monotonic()
            if phase in ("Running", "Succeeded", "Failed"):
                running.setdefault(name, now)
            if phase == "Succeeded":
                done.setdefault(name, now)
            elif phase == "Failed" and name not in failed:
                failed.append(name)
            if len(done) + len(failed) >= pods:
                finished.set()
                response.close()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.2)  # let the watch connect before the first create
    first = time.monotonic()
    for index in range(pods):
        name = f"bench-{run_id}-{index}"
        created[name] = time.monotonic()
        core.create_namespaced_pod(namespace, {
            "metadata": {"name": name, "labels": {"bench": run_id}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "base", "image": "crossdock/bench:1", "command": ["true"]}]}}, _preload_content=False)
    if not finished.wait(RUN_TIMEOUT):
        raise RuntimeError(f"only {len(done)} of {pods} pods finished within {RUN_TIMEOUT}s")
    last = max(done.values()) if done else time.monotonic()
    to_running = [running[n] - created[n] for n in created if n in running]
    to_done = [done[n] - created[n] for n in created if n in done]
    for name in created:  # leave the namespace clean for the next run
        try:
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=0, _preload_content=False)
        except client.ApiException:
            pass
    return {
        "pods": pods, "succeeded": len(done), "failed": len(failed),
        "pods_per_s": len(done) / (last - first) if last > first else float("nan"),
        "running_p50_ms": 1000 * percentile(to_running, 0.5), "running_p95_ms": 1000 * percentile(to_running, 0.95),
        "succeeded_p50_ms": 1000 * percentile(to_done, 0.5), "succeeded_p95_ms": 1000 * percentile(to_done, 0.95),
    }


def run_one_at_a_time(core: client.CoreV1Api, namespace: str, pods: int) -> dict:
    """Latency without queueing: each pod is created only after the previous one finished."""
    run_pods(core, namespace, 1)  # warm-up, not counted
    to_running, to_done = [], []
    for _ in range(pods):
        result = run_pods(core, namespace, 1)
        to_running.append(result["running_p50_ms"])
        to_done.append(result["succeeded_p50_ms"])
    return {"single_running_p50_ms": percentile(to_running, 0.5), "single_succeeded_p50_ms": percentile(to_done, 0.5)}


def bench_local(pods: int, workdir: Path) -> dict:
    kubeconfig = workdir / "local-kubeconfig"
    api = subprocess.Popen(runtime_command("--api-only", "--port", "0", "--state-dir", str(workdir / "local"),
                                           "--kubeconfig-out", str(kubeconfig)),
                           stdout=subprocess.PIPE, text=True)
    agent = None
    try:
        wait_for_line(api, "pods API on ")
        node = f"bench-local-{uuid.uuid4().hex[:4]}"
        agent = subprocess.Popen(runtime_command("--agent-only", "--kubeconfig", str(kubeconfig),
                                                 "--state-dir", str(workdir / "local-agent"), "--node-name", node),
                                 stdout=subprocess.PIPE, text=True)
        wait_for_line(agent, "node agent ")
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        before_agent = agent_stats(core, node)["apiCalls"]
        served_before = _served(kubeconfig)
        result = run_pods(core, "default", pods)
        time.sleep(0.5)  # let the agent finish its last status writes
        result["agent_requests_per_pod"] = (agent_stats(core, node)["apiCalls"] - before_agent) / pods
        result["api_requests_per_pod_all_clients"] = (_served(kubeconfig) - served_before) / pods
        result.update(run_one_at_a_time(core, "default", SINGLE_PODS))
        result["api_peak_rss_mib"] = peak_rss_mib(api.pid)
        result["agent_peak_rss_mib"] = peak_rss_mib(agent.pid)
        return result
    finally:
        for process in (agent, api):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


def _served(kubeconfig: Path) -> int:
    """Requests the local API has served so far (asked with its kubeconfig's token)."""
    _, stats = runtime_request(config.new_client_from_config(config_file=str(kubeconfig)), "GET", "/_crossdock/stats")
    return int(stats.get("requestsServed", 0))


def bench_real(pods: int, workdir: Path, kubeconfig: str) -> dict:
    core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    node = f"bench-real-{namespace}"
    agent = subprocess.Popen(runtime_command("--agent-only", "--kubeconfig", kubeconfig, "--namespace", namespace,
                                             "--state-dir", str(workdir / "real-agent"), "--node-name", node),
                             stdout=subprocess.PIPE, text=True)
    try:
        wait_for_line(agent, "node agent ")
        before_agent = agent_stats(core, node)["apiCalls"]
        result = run_pods(core, namespace, pods)
        time.sleep(0.5)
        result["agent_requests_per_pod"] = (agent_stats(core, node)["apiCalls"] - before_agent) / pods
        result.update(run_one_at_a_time(core, namespace, SINGLE_PODS))
        result["api_requests_per_pod_all_clients"] = None
        home = Path(os.environ.get("KUBE_APISERVER_HOME", Path.home() / ".cache" / "kube-apiserver"))
        for key, pidfile in (("api_peak_rss_mib", "apiserver.pid"), ("etcd_peak_rss_mib", "etcd.pid")):
            try:
                result[key] = peak_rss_mib(int((home / "run" / pidfile).read_text()))
            except (OSError, ValueError):
                result[key] = None
        result["agent_peak_rss_mib"] = peak_rss_mib(agent.pid)
        return result
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()


ROWS = [
    ("pods run to completion", "succeeded", "{:.0f}"),
    ("pods failed", "failed", "{:.0f}"),
    ("pods/s (create → all Succeeded)", "pods_per_s", "{:.1f}"),
    ("create→Running p50 (ms)", "running_p50_ms", "{:.0f}"),
    ("create→Running p95 (ms)", "running_p95_ms", "{:.0f}"),
    ("create→Succeeded p50 (ms)", "succeeded_p50_ms", "{:.0f}"),
    ("create→Succeeded p95 (ms)", "succeeded_p95_ms", "{:.0f}"),
    ("one at a time: create→Running p50 (ms)", "single_running_p50_ms", "{:.0f}"),
    ("one at a time: create→Succeeded p50 (ms)", "single_succeeded_p50_ms", "{:.0f}"),
    ("agent API requests per pod", "agent_requests_per_pod", "{:.1f}"),
    ("API requests per pod, all clients", "api_requests_per_pod_all_clients", "{:.1f}"),
    ("API server peak RSS (MiB)", "api_peak_rss_mib", "{:.0f}"),
    ("etcd peak RSS (MiB)", "etcd_peak_rss_mib", "{:.0f}"),
    ("node agent peak RSS (MiB)", "agent_peak_rss_mib", "{:.0f}"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=DEFAULT_PODS, help="pods per tier")
    parser.add_argument("--real-kubeconfig", default=os.environ.get(REAL_KUBECONFIG_ENV),
                        help=f"kubeconfig of a real kube-apiserver (default ${REAL_KUBECONFIG_ENV}); "
                             "without it only the local tier runs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pods-") as tmp:
        workdir = Path(tmp)
        results["local API + agent"] = bench_local(args.pods, workdir)
        if args.real_kubeconfig:
            results["kube-apiserver + agent"] = bench_real(args.pods, workdir, args.real_kubeconfig)
    tiers = list(results)
    width = max(len(label) for label, _, _ in ROWS) + 2
    print(f"pod runtime benchmark: {args.pods} pods of `true` per tier, {os.cpu_count()} cores")
    print("".ljust(width) + "".join(t.rjust(26) for t in tiers))
    for label, key, fmt in ROWS:
        cells = []
        for tier in tiers:
            value = results[tier].get(key)
            cells.append(("-" if value is None else fmt.format(value)).rjust(26))
        print(label.ljust(width) + "".join(cells))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
