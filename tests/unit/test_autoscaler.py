"""The autoscaler's decisions, one step at a time.

The pool here is an in-memory stand-in for a driver (:class:`RecordingPool`): the unit
under test is the decision logic (formula, bounds, cool-down, log lines, what it asks of
the driver), and a driver's own behaviour (processes, drains) is tested with real workers
in ``tests/integration/test_autoscaler_local.py``. The queue monitor is the real one,
never started: only its configuration is read.
"""

from __future__ import annotations

import json
import logging

import pytest

from crossdock.configuration import ConfigError, conf
from crossdock.monitoring.autoscaler import Autoscaler
from crossdock.monitoring.local_workers import choose_retirees
from crossdock.monitoring.queue_monitor import QueueMonitor
from crossdock.monitoring.queue_status import QueueStatus, WorkerInfo

BURST = {"min_workers": 0, "max_workers": 4, "max_tasks_per_worker": 4}


class RecordingPool:
    """Workers as counters; retiring takes idle ones first, as the drivers must."""

    driver = "fake"

    def __init__(self) -> None:
        self.workers: dict[str, int] = {}
        self.calls: list[tuple] = []
        self.ticks = 0
        self.fail_with: Exception | None = None

    def actual_workers(self, queue: str) -> int:
        return self.workers.get(queue, 0)

    def draining_workers(self, queue: str) -> list[str]:
        return []

    def scale_up(self, queue: str, count: int, status: QueueStatus) -> None:
        if self.fail_with:
            raise self.fail_with
        self.calls.append(("up", queue, count))
        self.workers[queue] = self.workers.get(queue, 0) + count

    def scale_down(self, queue: str, count: int, status: QueueStatus) -> list[str]:
        self.calls.append(("down", queue, count))
        self.workers[queue] -= count
        return [f"{queue}-{i}" for i in range(count)]

    def tick(self) -> None:
        self.ticks += 1

    def close(self) -> None:
        pass


@pytest.fixture
def queues(monkeypatch):
    def configure(entries: dict, **settings) -> None:
        monkeypatch.setenv("CROSSDOCK__WORKER_QUEUES__QUEUES", json.dumps(entries))
        for key, value in settings.items():
            monkeypatch.setenv(f"CROSSDOCK__WORKER_QUEUES__{key.upper()}", str(value))
        conf.reload()

    return configure


def autoscaler(pool, *, cooldown: float) -> Autoscaler:
    return Autoscaler(monitor=QueueMonitor(), pool=pool, cooldown=cooldown)


def status(queue: str = "burst", *, queued: int = 0, running: int = 0, executor: str = "CeleryExecutor",
           hosts: list[WorkerInfo] | None = None) -> QueueStatus:
    return QueueStatus(queue=queue, executor=executor, queued=queued, running=running, worker_hosts=hosts or [])


def test_a_burst_scales_up_at_once_to_max_and_logs_one_line_saying_why(queues, caplog):
    queues({"burst": BURST})
    pool = RecordingPool()
    scaler = autoscaler(pool, cooldown=3600)
    with caplog.at_level(logging.INFO, logger="crossdock.monitoring.autoscaler"):
        [decision] = scaler.decide([status(queued=300)])
        scaler.decide([status(queued=300)])  # nothing changed: no second line
    assert pool.calls == [("up", "burst", 4)]
    assert (decision.queue, decision.desired, decision.actual, decision.action) == ("burst", 4, 4, "up")
    assert [r.getMessage() for r in caplog.records] == [
        "autoscaler: queue burst 0 -> 4 workers (ceil((300 queued + 0 running) / 4 per worker) = 75, "
        "capped at max_workers 4) [fake]"]
    assert scaler.last_decisions["burst"].action == "none"
    assert pool.ticks == 2  # drains advance at every step


def test_scale_down_waits_for_the_cool_down_and_scale_up_never_does(queues):
    queues({"burst": BURST})
    pool = RecordingPool()
    pool.workers["burst"] = 4
    scaler = autoscaler(pool, cooldown=3600)
    [held] = scaler.decide([status(queued=0)])
    assert held.action == "cooldown" and "cool-down" in held.reason and pool.workers["burst"] == 4
    pool.workers["burst"] = 1
    [grown] = scaler.decide([status(queued=9)])
    assert grown.action == "up" and pool.workers["burst"] == 3


def test_a_quiet_queue_with_min_0_goes_to_zero_and_one_queued_task_brings_a_worker_back(queues, caplog):
    queues({"burst": BURST})
    pool = RecordingPool()
    pool.workers["burst"] = 2
    scaler = autoscaler(pool, cooldown=0)
    with caplog.at_level(logging.INFO, logger="crossdock.monitoring.autoscaler"):
        [down] = scaler.decide([status()])
        [up] = scaler.decide([status(queued=1)])
    assert (down.action, down.actual, up.action, up.actual) == ("down", 0, "up", 1)
    assert pool.calls == [("down", "burst", 2), ("up", "burst", 1)]
    assert caplog.records[0].getMessage() == (
        "autoscaler: queue burst 2 -> 0 workers (ceil((0 queued + 0 running) / 4 per worker) = 0) [fake] "
        "retiring burst-0, burst-1")


def test_workers_stay_within_min_and_max(queues):
    queues({"steady": {"min_workers": 2, "max_workers": 3, "max_tasks_per_worker": 1}})
    pool = RecordingPool()
    scaler = autoscaler(pool, cooldown=0)
    [idle] = scaler.decide([status("steady")])
    assert idle.desired == 2 and "raised to min_workers 2" in idle.reason
    [busy] = scaler.decide([status("steady", queued=50, running=7)])
    assert busy.desired == 3 and pool.workers["steady"] == 3
    [quiet] = scaler.decide([status("steady")])
    assert quiet.actual == 2  # down to min, never below


def test_running_tasks_count_so_a_busy_queue_does_not_shrink(queues):
    queues({"burst": BURST})
    pool = RecordingPool()
    pool.workers["burst"] = 4
    scaler = autoscaler(pool, cooldown=0)
    [decision] = scaler.decide([status(queued=0, running=13)])
    assert decision.action == "none" and decision.desired == 4


def test_an_unlisted_queue_gets_the_defaults_and_other_executors_queues_are_left_alone(queues):
    queues({}, default_min_workers=1, default_max_workers=2, default_max_tasks_per_worker=5)
    pool = RecordingPool()
    decisions = autoscaler(pool, cooldown=0).decide([
        status("adhoc", queued=12), status("kubernetes", queued=9, executor="KubernetesExecutor"),
        status("local", queued=9, executor="LocalExecutor")])
    assert [(d.queue, d.desired) for d in decisions] == [("adhoc", 2)]
    assert pool.calls == [("up", "adhoc", 2)]


def test_a_failing_driver_is_reported_once_per_error_and_the_step_goes_on(queues, caplog):
    queues({"burst": BURST, "other": BURST})
    pool = RecordingPool()
    pool.fail_with = RuntimeError("the API said no")
    scaler = autoscaler(pool, cooldown=0)
    with caplog.at_level(logging.WARNING, logger="crossdock.monitoring.autoscaler"):
        first = scaler.decide([status(queued=3), status("other", queued=5)])
        scaler.decide([status(queued=3), status("other", queued=5)])
    assert [d.action for d in first] == ["error", "error"]
    assert "the API said no" in first[0].reason
    assert len(caplog.records) == 2  # one per queue, not one per step
    pool.fail_with = None
    [recovered] = scaler.decide([status(queued=3)])
    assert recovered.action == "up"


def test_a_driver_that_retires_none_yet_is_not_a_change(queues, caplog):
    queues({"burst": BURST})

    class StartingPool(RecordingPool):
        def scale_down(self, queue, count, status):
            return []  # e.g. every worker still starting

    pool = StartingPool()
    pool.workers["burst"] = 3
    with caplog.at_level(logging.INFO, logger="crossdock.monitoring.autoscaler"):
        [decision] = autoscaler(pool, cooldown=0).decide([status()])
    assert decision.action == "none" and "no worker can be retired yet" in decision.reason
    assert not caplog.records


def test_retirees_are_idle_workers_first_then_the_least_busy_and_unknown_ones_last():
    loads = {"a": 3, "b": 0, "c": None, "d": 1, "e": 0}
    assert choose_retirees(["a", "b", "c", "d", "e"], loads, 2) == ["b", "e"]
    assert choose_retirees(["a", "b", "c", "d", "e"], loads, 4) == ["b", "e", "d", "a"]
    assert choose_retirees(["a", "c"], {"a": 2}, 1) == ["a"]
    assert choose_retirees(["a"], {}, 0) == []


@pytest.mark.parametrize("entry, message", [
    ({"min_workers": 5, "max_workers": 2}, "min_workers (5) is more than max_workers (2)"),
    ({"max_tasks_per_worker": 0}, "max_tasks_per_worker must be at least 1, got 0"),
    ({"max_tasks_per_worker": -3}, "max_tasks_per_worker must be at least 1, got -3"),
    ({"max_worker": 3}, "unknown key(s) max_worker"),
])
def test_a_bad_queue_entry_stops_the_autoscaler_before_it_decides_anything(queues, entry, message):
    queues({"burst": entry})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        autoscaler(RecordingPool(), cooldown=0)


def test_statuses_report_busy_workers_through_worker_hosts(queues):
    """The driver receives the status whose worker_hosts let it pick idle workers first."""
    queues({"burst": BURST})
    seen = []

    class SeeingPool(RecordingPool):
        def scale_down(self, queue, count, status):
            seen.append([(h.hostname, h.active + h.reserved) for h in status.worker_hosts])
            return super().scale_down(queue, count, status)

    pool = SeeingPool()
    pool.workers["burst"] = 2
    hosts = [WorkerInfo("w1@h", concurrency=4, active=2, reserved=0), WorkerInfo("w2@h", 4, 0, 0)]
    autoscaler(pool, cooldown=0).decide([status(running=2, hosts=hosts)])
    assert seen == [[("w1@h", 2), ("w2@h", 0)]]


def test_a_driver_that_cannot_count_its_workers_fails_that_queue_only(queues):
    queues({"burst": BURST, "other": BURST})

    class BlindPool(RecordingPool):
        def actual_workers(self, queue):
            if queue == "burst":
                raise PermissionError("may not read the Deployment")
            return super().actual_workers(queue)

    decisions = autoscaler(BlindPool(), cooldown=0).decide([status(queued=4), status("other", queued=4)])
    assert [(d.queue, d.action) for d in decisions] == [("burst", "error"), ("other", "up")]
    assert "may not read the Deployment" in decisions[0].reason
