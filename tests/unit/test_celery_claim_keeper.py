"""The claim keeper of a Celery pool process: a renewal that races the try's own outcome.

The keeper renews each running try's claim on its own thread while the try's thread
writes the outcome over it. If the outcome lands between the keeper's snapshot of what
runs and its renewal, the renewal finds a record that is no longer its STARTED claim.
That is the try's own outcome, not a takeover: no warning, no stop signal. The backend
is Celery's real database backend on a SQLite file.
"""

from __future__ import annotations

import logging

from celery import Celery, states

from crossdock.executors import celery_claim_keeper
from crossdock.executors.celery_claim import claim_task, new_claim_token
from crossdock.executors.celery_claim_keeper import ClaimKeeper


def database_backend(tmp_path):
    app = Celery("claims", set_as_current=False)
    app.conf.update(result_backend=f"db+sqlite:///{tmp_path / 'results.db'}")
    return app.backend


def running_try(backend, task_id):
    """Claim ``task_id`` as a worker does; returns the keeper holding it and the claim's token."""
    token = new_claim_token()
    started = {"hostname": "w", "pid": 1, "claim": token}
    assert claim_task(backend, task_id, meta=started).won
    keeper = ClaimKeeper(backend, renew_interval=0)
    keeper.hold(task_id, token, started)
    return keeper, token


def test_an_outcome_written_during_a_renewal_is_not_taken_for_a_takeover(tmp_path, monkeypatch, caplog):
    backend = database_backend(tmp_path)
    keeper, token = running_try(backend, "t1")
    stopped = []
    monkeypatch.setattr(keeper, "_stop_taken_over", stopped.append)
    real_replace = celery_claim_keeper.replace_own_claim

    def outcome_lands_first(backend_, task_id, **kwargs):
        if kwargs["state"] == states.STARTED:  # the renewal: the try settles just before it
            assert keeper.settle(task_id, token, states.SUCCESS, {"ok": True})
        return real_replace(backend_, task_id, **kwargs)

    monkeypatch.setattr(celery_claim_keeper, "replace_own_claim", outcome_lands_first)
    with caplog.at_level(logging.WARNING, logger="crossdock.executors.celery_claim_keeper"):
        keeper.renew_once()
    assert backend.get_task_meta("t1")["status"] == states.SUCCESS
    assert stopped == [] and "claim was replaced" not in caplog.text


def test_a_claim_replaced_by_someone_else_still_stops_the_try(tmp_path, monkeypatch, caplog):
    backend = database_backend(tmp_path)
    keeper, _ = running_try(backend, "t2")
    stopped = []
    monkeypatch.setattr(keeper, "_stop_taken_over", stopped.append)
    backend.store_result("t2", None, states.REVOKED)  # the scheduler gave the try up
    with caplog.at_level(logging.WARNING, logger="crossdock.executors.celery_claim_keeper"):
        keeper.renew_once()
    assert stopped == ["t2"] and "claim was replaced" in caplog.text
