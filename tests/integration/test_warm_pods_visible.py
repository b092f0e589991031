"""Warm pods as ``crossdock queues``, the metrics and ``cleanup-pods`` see them, on the local pod runtime.

A KubernetesExecutor with ``warm_pool_size = 2`` runs one try cold, which fills the pool
with two warm pods; a second try that waits for a flag file then takes one of them. While
it waits the API holds one idle warm pod and one assigned to a try: the queue view must
show the idle one under its profile and count the assigned one as the try's running pod,
never both. Once the try is done, ``cleanup-pods`` must delete the finished pods (the
warm one included) and keep the idle warm pod, which is the live scheduler's pool.
"""

from __future__ import annotations

import argparse
import io
import json
from contextlib import redirect_stdout

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from crossdock.cli.kubernetes_pods_command import cleanup_pods
from crossdock.cli.main import main
from crossdock.cli.queues_command import print_statuses
from crossdock.executors.kubernetes_executor import KubernetesExecutor
from crossdock.kubernetes.local_runtime import start_local_runtime
from crossdock.kubernetes.warm_profile import WARM_LABEL, assignment_of
from crossdock.models import TaskInstance
from crossdock.monitoring.metrics_collector import SchedulerStateCollector
from crossdock.monitoring.queue_monitor import QueueMonitor
from crossdock.monitoring.queue_status import WarmPodCount
from crossdock.runner.command import task_run_command
from crossdock.state import TaskInstanceState as S

from kube_executor_support import REJECT_IMAGES, Tier, configure, new_namespace, wait_until, write_dag
from metrics_support import Page


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    runtime = start_local_runtime(state_dir=tmp_path_factory.mktemp("warm-visible"), reject_images=REJECT_IMAGES)
    yield runtime
    runtime.stop()


def queue_try(executor, task_id):
    ti = TaskInstance(dag_id="visible", task_id=task_id, run_id="r1", map_index=-1, try_number=1,
                      executor_config={}, queue="kubernetes", priority_weight=1)
    executor.queue_command(ti, task_run_command(ti.key, subdir="DAGS_FOLDER/visible.py"))
    return ti.key


def pump_until(executor, key, states, events):
    def step():
        executor.heartbeat()
        for event_key, (state, info) in executor.get_event_buffer().items():
            events.setdefault(event_key, []).append((state, info))

    wait_until(lambda: any(state in states for state, _ in events.get(key, ())), step=step,
               what=f"{key.task_id} to reach {states}")
    return next(info for state, info in events[key] if state in states)


def test_queues_and_metrics_show_idle_warm_pods_per_profile_and_cleanup_keeps_the_pool(
        runtime, crossdock_home, monkeypatch, capsys):
    tier = Tier(name="local", make_client=runtime.api_client, namespace=new_namespace(runtime.api_client))
    monkeypatch.setenv("CROSSDOCK__CORE__EXECUTOR", "KubernetesExecutor")
    folder = configure(monkeypatch, crossdock_home, tier.namespace, warm_pool_size=2, delete_worker_pods=False,
                       config_file=runtime.kubeconfig_path)
    flag = crossdock_home / "go"
    write_dag(folder, "visible", f"""
        with DAG("visible") as dag:
            BashOperator(task_id="cold", bash_command="true")
            BashOperator(task_id="hold", bash_command="while [ ! -f {flag} ]; do sleep 0.05; done")
        """)
    executor = KubernetesExecutor(api_client=tier.make_client())
    executor.job_id = "warm-visible"
    executor.start()
    try:
        events: dict = {}
        pump_until(executor, queue_try(executor, "cold"), {S.SUCCESS, S.FAILED}, events)
        wait_until(lambda: sum(warm.ready for warm in executor.warm_pods()) == 2, step=executor.sync,
                   what="two ready warm pods")
        hold = queue_try(executor, "hold")
        info = pump_until(executor, hold, {S.RUNNING}, events)
        assigned = info["hostname"] if isinstance(info, dict) else info.hostname
        assert assigned.startswith("warm-")
        (idle,) = executor.warm_pods()
        profile = idle.profile

        # the queue view: the idle pod under its profile; the assigned one is the try's running pod
        monitor = QueueMonitor(read_workers=False)
        status = {s.queue: s for s in monitor.refresh()}["default"]
        assert status.executor == "KubernetesExecutor" and not status.errors
        assert (status.pods_pending, status.pods_running) == (0, 1)
        assert status.warm_pods == [WarmPodCount(profile=profile, pending=0, running=1)]
        table = io.StringIO()
        print_statuses([status], output="table", stream=table)
        warm_row = next(line for line in table.getvalue().splitlines() if "warm " in line)
        assert warm_row.split()[:2] == ["warm", profile[:8]]
        assert "warm pods: 0 pending, 1 running" in warm_row
        printed = io.StringIO()
        with redirect_stdout(printed):
            assert main(["queues", "-o", "json"]) == 0
        (row,) = [r for r in json.loads(printed.getvalue()) if r["queue"] == "default"]
        assert row["warm_pods"] == [{"profile": profile, "pending": 0, "running": 1}] and row["pods_running"] == 1

        registry = CollectorRegistry()
        registry.register(SchedulerStateCollector(monitor=monitor))
        page = Page(generate_latest(registry).decode())
        assert page.value("crossdock_warm_pods", profile=profile, phase="Running") == 1
        assert page.value("crossdock_warm_pods", profile=profile, phase="Pending") == 0
        assert page.value("crossdock_pods", phase="Running") == 1

        # cleanup-pods: the finished pods go (the used warm one too), the idle warm pod stays
        flag.touch()
        pump_until(executor, hold, {S.SUCCESS, S.FAILED}, events)
        assert events[hold][-1][0] == S.SUCCESS
        wait_until(lambda: {p["metadata"]["name"]: p["status"].get("phase") for p in tier.pods()}.get(assigned)
                   == "Succeeded", what="the used warm pod to finish")
        capsys.readouterr()
        assert cleanup_pods(argparse.Namespace(namespace=None, min_pending_minutes=5)) == 0
        out = capsys.readouterr().out
        assert f"deleted pod {tier.namespace}/{assigned} (Succeeded)" in out and "2 pod(s) deleted" in out
        left = {p["metadata"]["name"]: p for p in tier.pods()}
        assert idle.name in left and assigned not in left
        assert all((p["metadata"].get("labels") or {}).get(WARM_LABEL) == "true" and assignment_of(p) is None
                   for p in left.values())  # only the pool is left
    finally:
        executor.end()
        tier.delete_all_pods()
