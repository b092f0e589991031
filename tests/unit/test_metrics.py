"""The scheduler's metrics: counted from what it did, served over HTTP, parsed as Prometheus does.

The scheduler runs real DAG runs on the scripted executor (see scheduler_support), so
every count is known exactly; the page is fetched from the real endpoint and read with
prometheus-client's parser. The queue monitor and the autoscaler are read duck-typed
by the collector: where a test needs numbers no service here produces (broker
messages, pods, an autoscaler's decisions), it hands the collector a small object
with the same attributes holding real ``QueueStatus`` / ``ScalingDecision`` records.
"""

from __future__ import annotations

import logging
import socket
from datetime import timedelta
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import update

from crossdock import database
from crossdock.configuration import ConfigError, conf
from crossdock.database import create_session
from crossdock.models import Job
from crossdock.models.base import utcnow
from crossdock.monitoring.metrics_collector import SchedulerStateCollector
from crossdock.monitoring.metrics_server import start_scheduler_metrics
from crossdock.monitoring.queue_monitor import QueueMonitor
from crossdock.monitoring.queue_status import QueueStatus
from crossdock.monitoring.worker_pool import ScalingDecision
from crossdock.scheduler.dag_runs import create_dag_run
from crossdock.scheduler.scheduler_job import SchedulerJob
from crossdock.state import TaskInstanceState as S

from metrics_support import Page, scrape
from scheduler_support import HANG, ScriptedExecutor, write_dag

MAX_LOOPS = 2000
EXECUTOR = "ScriptedExecutor"


@pytest.fixture
def dags_folder(dags_folder, monkeypatch):
    for key, value in {"SCHEDULER__MAX_LOOP_SLEEP": "0.001", "SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0",
                       "METRICS__ENABLED": "True"}.items():
        monkeypatch.setenv(f"CROSSDOCK__{key}", value)
    conf.reload()
    database.migrate()
    return dags_folder


def parse_and_trigger(folder, dag_id: str, *run_ids: str) -> None:
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder

    with create_session() as session:
        sync_parse_result_to_db(parse_dag_folder(str(folder)), session)
    with create_session() as session:
        for run_id in run_ids or ("r1",):
            create_dag_run(session, dag_id=dag_id, run_id=run_id)


def quiet_monitor() -> QueueMonitor:
    """A real queue monitor refreshed by the test itself (no thread, no workers asked)."""
    return QueueMonitor(interval=3600, read_workers=False)


def runs_done(job) -> bool:
    return not job.runs and job.loop_count > 1


def test_outcomes_and_histograms_count_exactly_what_ran(dags_folder):
    write_dag(dags_folder, "mixed", """
        with DAG("mixed") as dag:
            oks = [BashOperator(task_id=f"ok{i}", bash_command="true", queue="metrics_q") for i in range(3)]
            bad = BashOperator(task_id="bad", bash_command="false", queue="metrics_q", retries=0)
            after = BashOperator(task_id="after_bad", bash_command="true", queue="metrics_q")
            bad >> after
    """)
    parse_and_trigger(dags_folder, "mixed")
    transitions = []
    job = SchedulerJob(executors=[ScriptedExecutor(outcomes={"bad": [S.FAILED]})], parse_dags=False,
                       on_state_change=lambda ti, old, new: transitions.append((ti.task_id, old, new)))
    monitor = quiet_monitor()
    handle = start_scheduler_metrics(job, monitor=monitor)
    try:
        job.run(stop_when=runs_done, max_loops=MAX_LOOPS)
        monitor.refresh()
        page = scrape(handle.url)
    finally:
        handle.stop()

    finished = "crossdock_task_instances_finished_total"
    assert page.kind("crossdock_task_instances_finished") == "counter"
    assert page.value(finished, dag_id="mixed", queue="metrics_q", executor=EXECUTOR, state="success") == 3
    assert page.value(finished, dag_id="mixed", queue="metrics_q", executor=EXECUTOR, state="failed") == 1
    # never routed to an executor, so it carries none
    assert page.value(finished, dag_id="mixed", queue="metrics_q", executor="", state="upstream_failed") == 1
    assert sum(s.value for s in page.samples if s.name == finished) == 5

    duration = "crossdock_task_run_duration_seconds_count"
    assert page.kind("crossdock_task_run_duration_seconds") == "histogram"
    assert page.value(duration, queue="metrics_q", executor=EXECUTOR, state="success") == 3
    assert page.value(duration, queue="metrics_q", executor=EXECUTOR, state="failed") == 1
    assert page.value(duration, state="upstream_failed") is None  # it did not run
    started = sum(1 for _task, old, new in transitions if new == S.RUNNING)
    assert started == 4
    assert page.value("crossdock_task_queued_to_running_seconds_count", queue="metrics_q",
                      executor=EXECUTOR) == started
    # the listener the caller passed still saw every transition beside the metrics
    assert ("after_bad", None, S.UPSTREAM_FAILED) in transitions

    assert page.value("crossdock_scheduler_loop_duration_seconds_count") == job.loop_count
    assert page.value("crossdock_scheduler_loops_total") == job.loop_count
    assert page.value("crossdock_executor_slots", executor=EXECUTOR, kind="open") == 32
    assert page.value("crossdock_executor_slots", executor=EXECUTOR, kind="running") == 0
    assert page.value("crossdock_publish_failures_total", executor=EXECUTOR) == 0
    assert page.value("crossdock_adopted_task_instances_total", executor=EXECUTOR) == 0
    for state in ("scheduled", "queued", "running"):
        assert page.value("crossdock_queue_tasks", queue="metrics_q", state=state) == 0
    # Not a Celery queue: no broker or worker numbers, rather than zeros that look read.
    assert page.value("crossdock_queue_broker_messages", queue="metrics_q") is None
    assert page.value("crossdock_queue_workers", queue="metrics_q") is None


def test_levels_are_read_at_scrape_time_while_a_task_runs(dags_folder):
    write_dag(dags_folder, "held", """
        with DAG("held") as dag:
            BashOperator(task_id="holds", bash_command="true", queue="held_q")
    """)
    parse_and_trigger(dags_folder, "held")
    executor = ScriptedExecutor(outcomes={"holds": [HANG]}, parallelism=4)
    job = SchedulerJob(executors=[executor], parse_dags=False)
    monitor = quiet_monitor()
    handle = start_scheduler_metrics(job, monitor=monitor)
    try:
        job.start()
        for _ in range(20):
            job.loop_once()
        monitor.refresh()
        page = scrape(handle.url)
    finally:
        handle.stop()
        job.stop()
        job.shutdown()
    assert page.value("crossdock_executor_slots", executor=EXECUTOR, kind="running") == 1
    assert page.value("crossdock_executor_slots", executor=EXECUTOR, kind="open") == 3
    assert page.value("crossdock_queue_tasks", queue="held_q", state="running") == 1
    assert page.value("crossdock_scheduler_dag_runs_active") == 1
    assert page.value("crossdock_scheduler_task_instances_in_flight") == 1
    assert page.value("crossdock_task_instances_finished_total", dag_id="held") is None
    assert page.value("crossdock_queue_monitor_age_seconds") >= 0


def test_adoptions_of_an_earlier_schedulers_tries_are_counted(dags_folder, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD", "1")
    conf.reload()
    write_dag(dags_folder, "long", """
        with DAG("long") as dag:
            BashOperator(task_id="a", bash_command="true")
    """)
    parse_and_trigger(dags_folder, "long", "r1", "r2")
    crashed = SchedulerJob(executors=[ScriptedExecutor(outcomes={"a": [HANG]})], parse_dags=False)
    crashed.start()
    for _ in range(10):
        crashed.loop_once()
    with create_session() as session:  # it dies without shutting down
        session.execute(update(Job).where(Job.id == crashed.job_id)
                        .values(latest_heartbeat=utcnow() - timedelta(seconds=60)))
    job = SchedulerJob(executors=[ScriptedExecutor(adopt=True)], parse_dags=False)
    handle = start_scheduler_metrics(job, monitor=quiet_monitor())
    try:
        job.run(stop_when=runs_done, max_loops=MAX_LOOPS)
        page = scrape(handle.url)
    finally:
        handle.stop()
    assert page.value("crossdock_adopted_task_instances_total", executor=EXECUTOR) == 2
    assert page.value("crossdock_reset_task_instances_total", executor=EXECUTOR) == 0


def test_failed_publishes_to_an_unreachable_broker_are_counted(dags_folder, monkeypatch):
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.models.taskinstancekey import TaskInstanceKey
    from crossdock.runner.command import task_run_command
    from executor_doubles import FakeTI
    from service_gates import free_port

    monkeypatch.setenv("CROSSDOCK__CELERY__BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("CROSSDOCK__CELERY__OPERATION_TIMEOUT", "0.5")
    conf.reload()
    executor = CeleryExecutor()
    job = SchedulerJob(executors=[executor], parse_dags=False)
    for task_id in ("t1", "t2"):
        key = TaskInstanceKey("d", task_id, "r1", 1)
        executor.queue_command(FakeTI(key), task_run_command(key, subdir="DAGS_FOLDER/d.py"), queue="q")
    handle = start_scheduler_metrics(job, monitor=quiet_monitor())
    try:
        executor.heartbeat()  # one failed publish; the batch's other try waits without a second
        executor.heartbeat()
        page = scrape(handle.url)
    finally:
        handle.stop()
    assert page.value("crossdock_publish_failures_total", executor="CeleryExecutor") == 2
    assert page.value("crossdock_executor_slots", executor="CeleryExecutor", kind="queued") == 2


def test_the_port_taken_is_a_clear_error_naming_key_and_address(dags_folder, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("CROSSDOCK__METRICS__PORT", str(port))
        conf.reload()
        job = SchedulerJob(executors=[ScriptedExecutor()], parse_dags=False)
        with pytest.raises(ConfigError) as error:
            start_scheduler_metrics(job, monitor=quiet_monitor())
    message = str(error.value)
    assert f"[metrics] port {port}" in message and f"127.0.0.1:{port}" in message
    assert "already in use" in message
    assert not job.state_listeners and not job.loop_listeners  # nothing left attached


def test_a_port_out_of_range_is_a_config_error(dags_folder, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__METRICS__PORT", "70000")
    conf.reload()
    with pytest.raises(ConfigError, match=r"\[metrics\] port must be between 0 and 65535"):
        start_scheduler_metrics(SchedulerJob(executors=[ScriptedExecutor()], parse_dags=False))


def test_off_unless_enabled_and_standalone_on_unless_turned_off(dags_folder, monkeypatch):
    job = SchedulerJob(executors=[ScriptedExecutor()], parse_dags=False)
    monkeypatch.delenv("CROSSDOCK__METRICS__ENABLED")
    conf.reload()
    assert start_scheduler_metrics(job) is None
    handle = start_scheduler_metrics(job, default_enabled=True)  # standalone, key not set
    try:
        assert handle is not None and handle.url.startswith("http://127.0.0.1:")
        assert handle.monitor is not None  # a queue monitor of its own, stopped with the handle
        scrape(handle.url)
    finally:
        handle.stop()
    port = int(handle.url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConnectionRefusedError):  # stop() closed the listener
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    monkeypatch.setenv("CROSSDOCK__METRICS__ENABLED", "False")
    conf.reload()
    assert start_scheduler_metrics(job, default_enabled=True) is None  # the user's choice wins


def test_another_address_than_loopback_warns_that_metrics_are_unauthenticated(dags_folder, monkeypatch,
                                                                              caplog):
    job = SchedulerJob(executors=[ScriptedExecutor()], parse_dags=False)
    caplog.set_level(logging.INFO, logger="crossdock.monitoring")
    handle = start_scheduler_metrics(job, monitor=quiet_monitor())
    handle.stop()
    assert not [r for r in caplog.records if "without authentication" in r.getMessage()]
    assert any(handle.url in r.getMessage() for r in caplog.records)  # the address chosen for port 0
    monkeypatch.setenv("CROSSDOCK__METRICS__HOST", "0.0.0.0")
    conf.reload()
    handle = start_scheduler_metrics(job, monitor=quiet_monitor())
    handle.stop()
    warnings = [r for r in caplog.records if "without authentication" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


class HeldMonitor:
    """The queue monitor's reading side, holding statuses a broker and the pods API would give."""

    def __init__(self, statuses):
        self.statuses = statuses
        self.age_seconds = 1.5
        self.refresh_seconds = 0.25

    def snapshot(self):
        return list(self.statuses)


def test_queue_pod_and_autoscaler_numbers_from_the_monitor_and_the_decisions():
    burst = QueueStatus(queue="burst", executor="CeleryExecutor", scheduled=2, queued=5, running=3,
                        broker_messages=4, workers=2, free_slots=1, desired_workers=3, oldest_wait_seconds=7.5)
    lost = QueueStatus(queue="lost_broker", executor="CeleryExecutor", queued=1,
                       errors=["broker redis://127.0.0.1:1/0 unreachable: refused"])
    pods = QueueStatus(queue="kubernetes", executor="KubernetesExecutor", queued=1, pods_pending=1, pods_running=2)
    decisions = {"burst": ScalingDecision(queue="burst", desired=3, actual=2, action="up", reason="", at=0.0)}
    autoscaler = SimpleNamespace(last_decisions=decisions, pool=SimpleNamespace(driver="local"))
    registry = CollectorRegistry()
    registry.register(SchedulerStateCollector(monitor=HeldMonitor([burst, lost, pods]), autoscaler=autoscaler))
    page = Page(generate_latest(registry).decode())

    assert page.value("crossdock_queue_tasks", queue="burst", state="scheduled") == 2
    assert page.value("crossdock_queue_tasks", queue="burst", state="queued") == 5
    assert page.value("crossdock_queue_tasks", queue="burst", state="running") == 3
    assert page.value("crossdock_queue_broker_messages", queue="burst") == 4
    assert page.value("crossdock_queue_workers", queue="burst") == 2
    assert page.value("crossdock_queue_free_slots", queue="burst") == 1
    assert page.value("crossdock_queue_desired_workers", queue="burst") == 3
    assert page.value("crossdock_queue_oldest_wait_seconds", queue="burst") == 7.5
    # An unreadable broker is a missing number and a counted error, never a zero.
    assert page.value("crossdock_queue_broker_messages", queue="lost_broker") is None
    assert page.value("crossdock_queue_read_errors", queue="lost_broker") == 1
    assert page.value("crossdock_queue_read_errors", queue="burst") == 0
    assert page.value("crossdock_pods", phase="Pending") == 1
    assert page.value("crossdock_pods", phase="Running") == 2
    assert page.value("crossdock_autoscaler_desired_workers", queue="burst", driver="local") == 3
    assert page.value("crossdock_autoscaler_actual_workers", queue="burst", driver="local") == 2
    assert page.value("crossdock_queue_monitor_age_seconds") == 1.5
    assert page.value("crossdock_executor_slots") is None  # no scheduler given: left out


def test_a_broken_source_leaves_the_others_on_the_page(caplog):
    class BrokenAutoscaler:
        pool = SimpleNamespace(driver="kubernetes")

        @property
        def last_decisions(self):
            raise RuntimeError("decisions unreadable")

    registry = CollectorRegistry()
    registry.register(SchedulerStateCollector(monitor=HeldMonitor([QueueStatus(queue="q", executor="LocalExecutor")]),
                                              autoscaler=BrokenAutoscaler()))
    page = Page(generate_latest(registry).decode())
    assert page.value("crossdock_queue_tasks", queue="q", state="queued") == 0
    assert page.value("crossdock_autoscaler_desired_workers") is None
    assert "decisions unreadable" in caplog.text
