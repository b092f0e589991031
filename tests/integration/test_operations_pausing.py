"""Pausing: new DAGs start paused (Airflow's default), and a paused DAG's manual run waits in
queued, with a real scheduler running, until the DAG is unpaused."""

from __future__ import annotations

from crossdock.cli.main import main
from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.models import DagModel

from kube_executor_support import use_dag_files
from operations_support import parse, run_state_is, scheduler_running, states, wait_for, write_ledger_dags

#: Loop steps the scheduler takes while a paused DAG's run must stay queued.
LOOPS_WHILE_PAUSED = 30


def test_a_new_dag_starts_paused_and_its_manual_run_waits_queued_until_unpaused(crossdock_home, monkeypatch, capsys):
    monkeypatch.delenv("CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION")  # the default, as a user has it
    folder = use_dag_files(crossdock_home, monkeypatch, SCHEDULER__MAX_LOOP_SLEEP="0.02")
    write_ledger_dags(folder, ledger=crossdock_home / "ledger.txt", gate=crossdock_home / "gate")
    assert conf.getboolean("core", "dags_are_paused_at_creation") is True
    parse(folder)
    with create_session() as session:
        assert session.get(DagModel, "quick").is_paused, "a DAG seen for the first time starts paused"

    assert main(["dags", "trigger", "quick", "-r", "r1"]) == 0
    out = capsys.readouterr().out
    assert "queued run 'r1' of DAG 'quick'" in out
    assert "DAG 'quick' is paused: the run waits in queued until: crossdock dags unpause quick" in out

    with scheduler_running() as job:
        first = job.loop_count
        wait_for(lambda: job.loop_count >= first + LOOPS_WHILE_PAUSED, what="the scheduler to loop")
        run_state, tis = states("quick", "r1")
        assert run_state == "queued" and not tis, "a paused DAG's manual run must not start"

        assert main(["dags", "unpause", "quick"]) == 0
        assert "1 queued run(s) start as the scheduler takes them up" in capsys.readouterr().out
        wait_for(run_state_is("quick", "r1", "success"), what="the run to start and succeed once unpaused")

    assert main(["dags", "pause", "quick"]) == 0
    with create_session() as session:
        assert session.get(DagModel, "quick").is_paused
