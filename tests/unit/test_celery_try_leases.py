"""Leases, own-claim writes and outage logging of the Celery path, without servers.

Claims are written to the real serverless result backend (SQLite under CROSSDOCK_HOME);
the lease watch runs on a clock the test moves, instead of waiting real seconds.
"""

from __future__ import annotations

import logging
import uuid

from celery import states

from crossdock.executors import celery_try_lease
from crossdock.executors.celery_app import get_celery_app
from crossdock.executors.celery_claim import claim_task, new_claim_token, replace_own_claim
from crossdock.executors.celery_outage_log import OutageLog
from crossdock.executors.celery_try_lease import TryLeaseWatch
from crossdock.executors.infrastructure_loss import InfrastructureLoss, is_infrastructure_loss


def test_only_the_claims_holder_replaces_its_record_and_a_verdict_of_someone_else_stands():
    backend = get_celery_app().backend
    task_id, token = str(uuid.uuid4()), new_claim_token()
    assert claim_task(backend, task_id, meta={"hostname": "w@h", "pid": 1, "claim": token}).won
    assert not replace_own_claim(backend, task_id, claim="someone-else", state=states.SUCCESS, meta={})
    assert replace_own_claim(backend, task_id, claim=token, state=states.STARTED,
                             meta={"hostname": "w@h", "pid": 1, "claim": token, "renewed_at": 2.0})
    assert backend.get_task_meta(task_id)["result"]["renewed_at"] == 2.0
    # The scheduler gives the try up as lost: the worker's late outcome does not overwrite it.
    assert replace_own_claim(backend, task_id, claim=token, state=states.FAILURE,
                             meta=RuntimeError("lost"))
    assert not replace_own_claim(backend, task_id, claim=token, state=states.SUCCESS, meta={})
    assert backend.get_task_meta(task_id)["status"] == states.FAILURE


def test_a_missing_record_is_written_by_the_holder_as_after_a_backend_lost_it():
    backend = get_celery_app().backend
    task_id = str(uuid.uuid4())
    assert replace_own_claim(backend, task_id, claim="t", state=states.SUCCESS, meta={"exit_code": 0})
    assert backend.get_task_meta(task_id)["status"] == states.SUCCESS


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_that_stops_moving_expires_and_one_that_moves_does_not(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(celery_try_lease.time, "monotonic", clock)
    watch = TryLeaseWatch(timeout=10)
    dead = {"claim": "a", "renewed_at": 1.0}
    assert watch.expired({"dead": dead, "alive": {"claim": "b", "renewed_at": 1.0}}) == []
    clock.now += 6
    assert watch.expired({"dead": dead, "alive": {"claim": "b", "renewed_at": 7.0}}) == []
    clock.now += 6
    assert watch.expired({"dead": dead, "alive": {"claim": "b", "renewed_at": 13.0}}) == ["dead"]


def test_records_without_a_lease_never_expire_and_a_zero_timeout_turns_the_watch_off(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(celery_try_lease.time, "monotonic", clock)
    old_worker = {"hostname": "w@h", "pid": 1}
    watch, off = TryLeaseWatch(timeout=1), TryLeaseWatch(timeout=0)
    for _ in range(3):
        assert watch.expired({"x": old_worker}) == []
        assert off.expired({"x": {"claim": "a", "renewed_at": 1.0}}) == []
        clock.now += 5


def test_an_outage_is_one_warning_when_it_starts_and_one_when_everything_is_back(caplog):
    log = logging.getLogger("crossdock.executors.test_outage")
    outage = OutageLog(log, what="CeleryExecutor")
    with caplog.at_level(logging.DEBUG, logger=log.name):
        for _ in range(100):
            outage.failed("broker", "ConnectionError: refused")
            outage.ok("result backend")  # the backend answering does not end a broker outage
        outage.failed("result backend", "ConnectionError: refused")
        outage.ok("broker")
        assert outage.in_outage
        outage.ok("result backend")
        outage.ok("broker")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "broker is unreachable (ConnectionError: refused)" in warnings[0]
    assert "reachable again" in warnings[1] and "(101 operations failed meanwhile)" in warnings[1]
    assert not outage.in_outage


def test_an_infrastructure_loss_is_still_a_readable_reason():
    reason = InfrastructureLoss("worker w@h stopped renewing the lease")
    assert is_infrastructure_loss(reason) and "w@h" in reason and str(reason) == reason
    assert not is_infrastructure_loss("RuntimeError: it broke")
    assert is_infrastructure_loss({"reason": "gone", "infrastructure_loss": True})
