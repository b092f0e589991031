"""Idle warm pods in the queue view: how pods are split, printed, exported, and which ones cleanup-pods removes.

Pod objects are dicts shaped as the API returns them; the statuses are real
``QueueStatus`` records. Without warm pods every output must be what it was before.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from crossdock.cli.kubernetes_pods_command import cleanup_reason
from crossdock.cli.queues_command import print_statuses
from crossdock.kubernetes.warm_profile import ASSIGNMENT_ANNOTATION, PROFILE_LABEL, WARM_LABEL
from crossdock.monitoring.metrics_collector import SchedulerStateCollector
from crossdock.monitoring.pod_counts import count_pods
from crossdock.monitoring.queue_status import QueueStatus, WarmPodCount

from metrics_support import Page

PROFILE_A = "0123456789abcdef"
PROFILE_B = "fedcba9876543210"
NOW = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)


def pod(phase, *, warm_profile=None, assigned=False, age_seconds=0.0):
    labels = {"kubernetes_executor": "True"}
    annotations = {}
    if warm_profile:
        labels.update({WARM_LABEL: "true", PROFILE_LABEL: warm_profile})
    if assigned:
        annotations[ASSIGNMENT_ANNOTATION] = json.dumps(["crossdock", "tasks", "run", "d", "t", "r"])
    created = (NOW - timedelta(seconds=age_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"name": "p", "labels": labels, "annotations": annotations, "creationTimestamp": created},
            "status": {"phase": phase}}


def test_idle_warm_pods_are_counted_per_profile_and_assigned_ones_as_tries_pods():
    counts = count_pods([
        pod("Running"), pod("Pending"),
        pod("Running", warm_profile=PROFILE_A), pod("Pending", warm_profile=PROFILE_A),
        pod("Running", warm_profile=PROFILE_A, assigned=True),
        pod("Running", warm_profile=PROFILE_B),
        pod("Succeeded", warm_profile=PROFILE_B),  # exited idle: neither the pool nor a try
    ])
    assert counts.phases == {"Running": 2, "Pending": 1}
    assert counts.warm == {PROFILE_A: {"Running": 1, "Pending": 1}, PROFILE_B: {"Running": 1}}


def kubernetes_status(**fields):
    return QueueStatus(queue="kubernetes", executor="KubernetesExecutor", running=1, pods_pending=0,
                       pods_running=1, **fields)


def table(statuses):
    stream = io.StringIO()
    print_statuses(statuses, output="table", stream=stream)
    return stream.getvalue()


def test_the_table_has_one_row_per_warm_profile_under_the_kubernetes_queue():
    celery = QueueStatus(queue="default", executor="CeleryExecutor", configured=True)
    status = kubernetes_status(warm_pods=[WarmPodCount(PROFILE_A, pending=1, running=2),
                                          WarmPodCount(PROFILE_B, running=1)])
    lines = table([status, celery]).splitlines()
    queues = [line.split()[0] for line in lines[2:]]
    assert queues == ["kubernetes", "warm", "warm", "default"]
    assert lines[3].split()[:2] == ["warm", PROFILE_A[:8]] and PROFILE_A not in lines[3]
    assert lines[3].endswith("warm pods: 1 pending, 2 running")
    assert lines[4].split()[:2] == ["warm", PROFILE_B[:8]] and lines[4].endswith("warm pods: 0 pending, 1 running")
    assert "pods: 0 pending, 1 running" in lines[2]


def test_without_warm_pods_the_table_is_unchanged_and_json_has_the_full_keys():
    assert "warm" not in table([kubernetes_status()])
    stream = io.StringIO()
    print_statuses([kubernetes_status(warm_pods=[WarmPodCount(PROFILE_A, pending=1, running=2)])],
                   output="json", stream=stream)
    (row,) = json.loads(stream.getvalue())
    assert row["warm_pods"] == [{"profile": PROFILE_A, "pending": 1, "running": 2}]


def scrape(statuses):
    registry = CollectorRegistry()
    monitor = SimpleNamespace(snapshot=lambda: statuses, age_seconds=None, refresh_seconds=None)
    registry.register(SchedulerStateCollector(monitor=monitor))
    return Page(generate_latest(registry).decode())


def test_the_warm_pods_gauge_is_by_profile_and_phase_and_absent_without_warm_pods():
    page = scrape([kubernetes_status(warm_pods=[WarmPodCount(PROFILE_A, pending=1, running=2)]),
                   kubernetes_status(warm_pods=[WarmPodCount(PROFILE_A, pending=1, running=2)])])
    # two Kubernetes queues show the same pods: each pod is one sample, not one per queue
    assert page.value("crossdock_warm_pods", profile=PROFILE_A, phase="Pending") == 1
    assert page.value("crossdock_warm_pods", profile=PROFILE_A, phase="Running") == 2
    assert page.kind("crossdock_warm_pods") == "gauge"
    assert "crossdock_warm_pods" not in scrape([kubernetes_status()]).families


STALE = timedelta(seconds=420)


@pytest.mark.parametrize("item, expected", [
    (pod("Running", warm_profile=PROFILE_A, age_seconds=60), None),  # a live pool
    (pod("Running", warm_profile=PROFILE_A, age_seconds=421),
     "unassigned warm pod older than 420 s: its scheduler is gone"),
    (pod("Running", warm_profile=PROFILE_A, assigned=True, age_seconds=4000), None),  # a try runs in it
    (pod("Running", age_seconds=4000), None),  # a cold try's pod
    (pod("Succeeded", warm_profile=PROFILE_A, assigned=True), "Succeeded"),
    (pod("Failed", warm_profile=PROFILE_A), "Failed"),
])
def test_cleanup_keeps_a_live_warm_pool_and_deletes_finished_or_stale_warm_pods(item, expected):
    assert cleanup_reason(item, min_pending=timedelta(minutes=30), now=NOW, stale_warm=STALE) == expected
