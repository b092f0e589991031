"""Clearing and marking task instances, with a real scheduler running and with none.

The tasks write a ledger line per try (task, try number, start, end), so what ran, and
how often, is read from what the tasks did, not from what the scheduler says about them.
With a scheduler active the CLI's actions become requests it applies in its next loop
step; with none, they are written directly under the free lease (principle 1, see
``crossdock.operations.state_delivery``).
"""

from __future__ import annotations

import pytest

from crossdock.cli.main import main
from crossdock.operations import trigger_dag

from kube_executor_support import use_dag_files
from operations_support import (ledger_lines, parse, run_state_is, scheduler_running, states, wait_for,
                                write_ledger_dags)


@pytest.fixture
def ledger(crossdock_home, monkeypatch):
    folder = use_dag_files(crossdock_home, monkeypatch, SCHEDULER__MAX_LOOP_SLEEP="0.05")
    ledger, gate = crossdock_home / "ledger.txt", crossdock_home / "gate"
    write_ledger_dags(folder, ledger=ledger, gate=gate)
    parse(folder)
    gate.touch()  # tasks named hold* run until it is removed
    return ledger, gate


def tries(ledger, task_id):
    return [try_number for name, try_number, _, _ in ledger_lines(ledger) if name == task_id]


def running(dag_id, run_id, task_id, try_number=1):
    def check():
        ti = states(dag_id, run_id)[1].get(task_id)
        return ti is not None and ti.state == "running" and ti.try_number == try_number
    return check


def test_clear_while_the_scheduler_runs_reruns_a_failed_task_with_its_downstream_and_a_running_one(ledger, capsys):
    ledger, gate = ledger
    trigger_dag("flow", run_id="r1")
    trigger_dag("held", run_id="r1")
    with scheduler_running() as job:
        wait_for(run_state_is("flow", "r1", "failed"), what="flow to fail")
        _, tis = states("flow", "r1")
        assert (tis["a"].state, tis["b"].state, tis["c"].state) == ("success", "failed", "upstream_failed")

        assert main(["tasks", "clear", "flow", "-t", "^b$", "--downstream", "-y"]) == 0
        out = capsys.readouterr().out
        assert f"2 task instance(s) cleared by scheduler job {job.job_id}" in out, out
        wait_for(run_state_is("flow", "r1", "success"), what="flow to succeed after the clear")

        wait_for(running("held", "r1", "hold"), what="hold's first try to run")
        assert main(["tasks", "clear", "held", "-t", "hold", "--run-id", "r1", "-y"]) == 0
        wait_for(running("held", "r1", "hold", try_number=2), what="hold's second try to run")
        gate.unlink()
        wait_for(run_state_is("held", "r1", "success"), what="held to succeed")

    assert tries(ledger, "a") == [1], "a succeeded and was not cleared: it ran once"
    assert tries(ledger, "b") == [1, 2], "b's try number was kept: the rerun is try 2"
    assert tries(ledger, "c") == [1], "c was cleared with --downstream and ran after b succeeded"
    assert tries(ledger, "hold") == [2], "hold's first try was stopped when it was cleared"
    assert states("flow", "r1")[1]["b"].try_number == 2


def test_clear_with_no_scheduler_writes_at_once_and_only_failed_leaves_successes(ledger, capsys):
    ledger, _gate = ledger
    trigger_dag("flow", run_id="r1")
    with scheduler_running():
        wait_for(run_state_is("flow", "r1", "failed"), what="flow to fail")
    capsys.readouterr()

    assert main(["tasks", "clear", "flow", "--only-failed", "-y"]) == 0
    assert "2 task instance(s) cleared (written directly: no scheduler is active)" in capsys.readouterr().out
    run_state, tis = states("flow", "r1")
    assert run_state == "queued", "a finished run with cleared tasks runs again"
    assert (tis["a"].state, tis["b"].state, tis["c"].state) == ("success", None, None)
    assert (tis["b"].try_number, tis["b"].max_tries) == (1, 1), "the try number is kept; retries start again"

    with scheduler_running():
        wait_for(run_state_is("flow", "r1", "success"), what="the next scheduler to run what was cleared")
    assert tries(ledger, "a") == [1] and tries(ledger, "b") == [1, 2] and tries(ledger, "c") == [1]


def test_mark_success_stops_a_running_try_and_resumes_what_a_failure_held_back(ledger, capsys):
    ledger, gate = ledger
    trigger_dag("flow", run_id="r1")
    trigger_dag("held", run_id="r1")
    with scheduler_running():
        wait_for(running("held", "r1", "hold"), what="hold to run")
        assert main(["tasks", "mark-success", "held", "hold", "r1"]) == 0
        wait_for(run_state_is("held", "r1", "success"), what="held to succeed once hold is marked")

        wait_for(run_state_is("flow", "r1", "failed"), what="flow to fail")
        assert main(["tasks", "mark-success", "flow", "b", "r1"]) == 0
        out = capsys.readouterr().out
        assert "resume (clear)" in out and "marked success or resumed" in out, out
        wait_for(run_state_is("flow", "r1", "success"), what="flow to succeed once b is marked")
    gate.unlink()

    _, held = states("held", "r1")
    assert held["hold"].state == "success" and held["after"].state == "success"
    assert tries(ledger, "hold") == [], "the running try was stopped, not left to finish"
    assert tries(ledger, "after") == [1]
    _, flow = states("flow", "r1")
    assert flow["b"].state == "success" and flow["b"].try_number == 1, "marked, not run again"
    assert tries(ledger, "c") == [1], "c, upstream_failed, was resumed and ran"


def test_mark_failed_on_a_running_task_fails_its_run(ledger):
    trigger_dag("held", run_id="r1")
    with scheduler_running():
        wait_for(running("held", "r1", "hold"), what="hold to run")
        assert main(["tasks", "mark-failed", "held", "hold", "r1"]) == 0
        wait_for(run_state_is("held", "r1", "failed"), what="held to fail")
    _, tis = states("held", "r1")
    assert tis["hold"].state == "failed" and tis["hold"].failure_reason == "marked failed by a user"
    assert tis["after"].state == "upstream_failed"
