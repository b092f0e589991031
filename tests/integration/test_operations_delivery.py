"""How a clear reaches task instances (principle 1), on SQLite and PostgreSQL: written at once
while no scheduler holds the lease, requested while one does, and a request left by a
scheduler that died is applied by the one that takes over."""

from __future__ import annotations

from sqlalchemy import select, update

from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.models import Job, SchedulerLease, StateRequest
from crossdock.models.base import utcnow
from crossdock.operations import clear_task_instances, scheduler_status, trigger_dag
from crossdock.scheduler.leadership import LEASE_NAME, SchedulerLease as Lease, hold_free_lease

from kube_executor_support import use_dag_files
from operations_support import ledger_lines, parse, run_state_is, scheduler_running, states, wait_for, write_ledger_dags


def test_a_clear_is_written_at_once_without_a_scheduler_and_requested_from_one_that_holds_the_lease(
        backend, crossdock_home, monkeypatch):
    folder = use_dag_files(crossdock_home, monkeypatch, SCHEDULER__MAX_LOOP_SLEEP="0.02")
    conf.reload()
    ledger = crossdock_home / "ledger.txt"
    write_ledger_dags(folder, ledger=ledger, gate=crossdock_home / "gate")
    parse(folder)
    trigger_dag("quick", run_id="r1")
    trigger_dag("flow", run_id="r1")

    assert clear_task_instances("quick", dry_run=True) == [], "a run not started has no task instances"
    with scheduler_running():
        wait_for(run_state_is("quick", "r1", "success"), what="quick to succeed")
        wait_for(run_state_is("flow", "r1", "failed"), what="flow to fail")
    assert scheduler_status() == {"job_id": None, "alive": False}, "a clean stop gives the lease up"

    cleared = clear_task_instances("quick")
    assert [(row["task_id"], row["state"], row["applied"], row["request_id"]) for row in cleared] == [
        ("only", "success", True, None)]
    run_state, tis = states("quick", "r1")
    assert run_state == "queued" and tis["only"].state is None

    # A scheduler holds the lease but died: the request waits for the one that takes over.
    with create_session() as session:
        dead = Job(job_type="SchedulerJob", state="running", hostname="gone", pid=1, executor_class="LocalExecutor",
                   start_date=utcnow(), latest_heartbeat=utcnow())
        session.add(dead)
        session.flush()
        session.execute(update(SchedulerLease).where(SchedulerLease.name == LEASE_NAME).values(
            holder_job_id=dead.id, token=SchedulerLease.token + 1))
    cleared = clear_task_instances("flow", task_ids=["b"], downstream=True)
    assert [(row["task_id"], row["applied"]) for row in cleared] == [("b", False), ("c", False)]
    assert states("flow", "r1")[1]["b"].state == "failed", "nothing is written under a held lease"

    with scheduler_running() as job:  # a standby until the dead holder's lease times out
        wait_for(run_state_is("flow", "r1", "success"), what="the new scheduler to apply the request")
        wait_for(run_state_is("quick", "r1", "success"), what="quick, cleared directly, to run again")
    with create_session() as session:
        request = session.scalars(select(StateRequest)).one()
    assert (request.applied_by_job_id, request.outcome) == (job.job_id, "2 task instance(s) cleared")
    assert sorted((name, try_number) for name, try_number, *_ in ledger_lines(ledger)) == [
        ("a", 1), ("b", 1), ("b", 2), ("c", 1), ("only", 1), ("only", 2)]


def test_the_free_lease_is_held_only_while_no_scheduler_holds_it(backend):
    def lease_row():
        with create_session() as session:
            row = session.get(SchedulerLease, LEASE_NAME)
            return row and (row.holder_job_id, row.token, row.renewals)

    assert lease_row() is None
    with create_session() as session:
        assert hold_free_lease(session), "no scheduler ever ran: the lease is created free and held"
    assert lease_row() == (None, 0, 1)

    scheduler = Lease(job_id=7, takeover_seconds=2)
    with create_session() as session:
        assert scheduler.try_acquire(session), "a free lease is taken at once"
    with create_session() as session:
        assert not hold_free_lease(session), "a scheduler holds it: nothing may be written directly"
    with create_session() as session:
        scheduler.release(session)
    holder, token, renewals = lease_row()
    with create_session() as session:
        assert hold_free_lease(session)
    assert lease_row() == (None, token, renewals + 1), "held, not taken: a standby's read of it is spoilt"
