"""The queue monitor and ``crossdock queues`` on each broker crossdock supports.

A DAG sends three tasks to a queue no worker consumes (``high_memory``) while a worker
consumes the default queue: the monitor must show the three both as the scheduler's queued tasks
and as messages waiting in the broker — on the serverless filesystem broker, on Redis and
on RabbitMQ — with no worker and a desired count of one, and the consumed queue with its
worker and free slots. With the broker down, the scheduler-side numbers stay and the
error names the broker without its password.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from contextlib import redirect_stdout

import pytest
from sqlalchemy import func, select

from crossdock.cli.main import main
from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_worker import start_embedded_workers
from crossdock.models import TaskInstance
from crossdock.monitoring.queue_monitor import QueueMonitor
from crossdock.scheduler.scheduler_job import SchedulerJob
from kube_executor_support import parse_and_trigger, use_dag_files
from service_gates import RABBITMQ_URL, REDIS_URL, free_port, require_service

DAG = """
from crossdock import DAG, task

with DAG("monitored", schedule=None):
    @task(queue="{heavy}")
    def big(i):
        return i

    [big.override(task_id=f"big_{{n}}")(n) for n in range(3)]
"""


def broker_for(name: str) -> str | None:
    if name == "redis":
        require_service("redis")
        return f"{REDIS_URL}/3"
    if name == "rabbitmq":
        require_service("rabbitmq")
        return RABBITMQ_URL
    return None  # the serverless default


def queued_count() -> int:
    with create_session() as session:
        return session.scalar(select(func.count()).select_from(TaskInstance)
                              .where(TaskInstance.state == "queued"))


def send_three_to_an_unconsumed_queue(crossdock_home, monkeypatch, broker: str | None):
    """Run a scheduler until the three heavy tasks are queued; return (heavy, light) queue names."""
    heavy, light = f"high_memory-{uuid.uuid4().hex[:8]}", f"light-{uuid.uuid4().hex[:8]}"
    settings = {"CORE__EXECUTOR": "CeleryExecutor", "CORE__DEFAULT_QUEUE": light,
                "SCHEDULER__MAX_LOOP_SLEEP": "0.02"}
    if broker:
        settings["CELERY__BROKER_URL"] = broker
    folder = use_dag_files(crossdock_home, monkeypatch, {"monitored.py": DAG.format(heavy=heavy, light=light)},
                           **settings)
    parse_and_trigger(folder, "monitored")
    deadline = time.monotonic() + 30

    def three_queued(job) -> bool:
        assert time.monotonic() < deadline, "the heavy tasks were never queued"
        return job.loop_count > 2 and queued_count() >= 3

    SchedulerJob(executors=[CeleryExecutor()], parse_dags=False).run(stop_when=three_queued)
    return heavy, light


@pytest.mark.parametrize("broker_name", ["filesystem", "redis", "rabbitmq"])
def test_waiting_tasks_show_on_the_scheduler_side_and_in_the_broker(crossdock_home, monkeypatch, broker_name):
    heavy, _ = send_three_to_an_unconsumed_queue(crossdock_home, monkeypatch, broker_for(broker_name))
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["queues", "-o", "json"]) == 0
    printed = {row["queue"]: row for row in json.loads(out.getvalue())}
    assert {"queue", "executor", "queued", "running", "workers", "desired_workers"} <= set(printed[heavy])
    hm = printed[heavy]
    assert (hm["executor"], hm["queued"], hm["running"], hm["broker_messages"]) == ("CeleryExecutor", 3, 0, 3)
    assert (hm["workers"], hm["free_slots"], hm["desired_workers"]) == (0, 0, 1)
    assert "(3 queued + 0 running)" in hm["desired_reason"]
    assert hm["oldest_wait_seconds"] is not None and hm["oldest_wait_seconds"] >= 0
    assert not hm["configured"] and not hm["errors"]


def test_a_worker_shows_under_the_queue_it_consumes_with_its_free_slots(crossdock_home, monkeypatch):
    heavy, light = send_three_to_an_unconsumed_queue(crossdock_home, monkeypatch, broker_for("redis"))
    with start_embedded_workers(queues=[light], concurrency=2) as workers:
        workers.wait_ready()
        deadline = time.monotonic() + 20
        while True:  # until the new worker answers the inspect broadcast
            statuses = {s.queue: s for s in QueueMonitor().refresh()}
            if statuses[light].workers:
                break
            assert time.monotonic() < deadline, statuses[light]
            time.sleep(0.2)
    consumed = statuses[light]
    assert consumed.workers == 1 and consumed.free_slots == 2 and consumed.broker_messages == 0
    assert consumed.worker_hosts[0].concurrency == 2 and consumed.worker_hosts[0].active == 0
    assert statuses[heavy].workers == 0  # the worker does not consume it


def test_a_configured_queue_reports_its_own_bounds(crossdock_home, monkeypatch, capsys):
    heavy, _ = send_three_to_an_unconsumed_queue(crossdock_home, monkeypatch, None)
    monkeypatch.setenv("CROSSDOCK__WORKER_QUEUES__QUEUES", json.dumps({
        heavy: {"min_workers": 0, "max_workers": 5, "max_tasks_per_worker": 2},
        "hihg_memory": {"max_workers": 2}}))  # misspelt: no DAG uses it
    conf.reload()
    statuses = {s.queue: s for s in QueueMonitor(read_workers=False).refresh()}
    status = statuses[heavy]
    assert status.configured and (status.min_workers, status.max_workers) == (0, 5)
    assert status.desired_workers == 2  # ceil(3 / 2)
    assert status.used_by_dags and not statuses["hihg_memory"].used_by_dags
    assert main(["queues"]) == 0
    printed = capsys.readouterr().out
    assert "note: in [worker_queues] queues but no DAG has a task on it (a misspelt name?): hihg_memory" in printed


def test_an_unreachable_broker_is_named_and_the_scheduler_side_numbers_stay(crossdock_home, monkeypatch, capsys):
    heavy, _ = send_three_to_an_unconsumed_queue(crossdock_home, monkeypatch, None)
    dead = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("CROSSDOCK__CELERY__BROKER_URL", dead)
    conf.reload()
    assert main(["queues"]) == 0
    printed = capsys.readouterr().out
    assert heavy in printed
    line = next(row for row in printed.splitlines() if row.startswith(heavy))
    assert line.split()[2:4] == ["3", "0"]  # waiting, running: the scheduler's numbers
    assert "unreachable" in printed and f"127.0.0.1:{dead.rsplit(':', 1)[1].split('/')[0]}" in printed
    assert "hunter2" not in printed


def test_the_kubernetes_queue_shows_crossdock_pods_by_phase(crossdock_home, monkeypatch):
    """Pods of the local pod runtime, listed through the official client as on a cluster."""
    from kubernetes import client

    from crossdock.kubernetes.local_runtime.standalone import (
        CONFIG_FILE_ENV, SHARE_ENV, start_runtime_unless_configured,
    )
    from crossdock.kubernetes.kube_client import get_kube_client

    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv(CONFIG_FILE_ENV, raising=False)
    monkeypatch.delenv(SHARE_ENV, raising=False)
    use_dag_files(crossdock_home, monkeypatch, CORE__EXECUTOR="CeleryKubernetesExecutor")
    runtime = start_runtime_unless_configured()
    try:
        core = client.CoreV1Api(get_kube_client())
        labels = {"kubernetes_executor": "True", "crossdock-worker": "1"}
        for name, labelled in (("ours", labels), ("not-ours", {"app": "other"})):
            core.create_namespaced_pod("default", {
                "metadata": {"name": name, "labels": labelled},
                "spec": {"containers": [{"name": "base", "image": "crossdock-worker:latest",
                                         "command": ["sleep", "30"]}]}})
        deadline = time.monotonic() + 20
        while True:
            status = {s.queue: s for s in QueueMonitor(read_workers=False).refresh()}["kubernetes"]
            if status.pods_running == 1:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status.executor == "KubernetesExecutor" and status.pods_pending == 0 and not status.errors
        assert status.desired_workers is None  # pods are not scaled as workers
    finally:
        runtime.stop()
