"""Runs as a user handles them with a scheduler running: ``dags trigger --wait`` shows
progress, a run being worked on is not deleted from under the scheduler, a finished one
is, and ``dags delete`` removes a DAG's history until its file is parsed again."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from crossdock.cli.main import main
from crossdock.database import create_session
from crossdock.models import DagModel, DagRun, TaskInstance
from crossdock.operations import trigger_dag

from kube_executor_support import use_dag_files
from operations_support import parse, run_state_is, scheduler_running, states, wait_for, write_ledger_dags


def count(model, **where) -> int:
    with create_session() as session:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return session.scalar(query)


def test_runs_show_progress_and_are_deleted_only_when_no_scheduler_works_on_them(crossdock_home, monkeypatch,
                                                                                  capsys):
    folder = use_dag_files(crossdock_home, monkeypatch, SCHEDULER__MAX_LOOP_SLEEP="0.02")
    gate = crossdock_home / "gate"
    write_ledger_dags(folder, ledger=crossdock_home / "ledger.txt", gate=gate)
    parse(folder)
    gate.touch()
    with scheduler_running() as job:
        assert main(["dags", "trigger", "flow", "-r", "w1", "--wait"]) == 1, "flow fails: --wait exits 1"
        lines = capsys.readouterr().out.splitlines()
        assert lines[-2:] == ["run w1: failed · tasks 3/3 done · success 1, failed 1, upstream_failed 1",
                              "run 'w1' finished: failed"]

        waiting = threading.Thread(target=lambda: codes.append(main(["dags", "trigger", "held", "-r", "w2",
                                                                     "--wait"])))
        codes: list[int] = []
        shown: list[str] = []
        waiting.start()
        wait_for(lambda: shown.append(capsys.readouterr().out) or "run w2: running · tasks 0/2 done · "
                 "running 1, none 1" in "".join(shown), what="--wait to show hold running")
        gate.unlink()
        waiting.join(timeout=60)
        shown.append(capsys.readouterr().out)
        progress = [line for line in "".join(shown).splitlines() if line.startswith("run w2: ")]
        assert len(progress) == len(set(progress)), "one plain line per change, none repeated"
        assert progress[-1] == "run w2: success · tasks 2/2 done · success 2" and codes == [0]
        gate.touch()

        trigger_dag("held", run_id="r1")
        wait_for(lambda: (states("held", "r1")[1].get("hold") or TaskInstance()).state == "running",
                 what="hold to run")
        assert main(["dags", "delete-run", "held", "r1"]) == 1
        assert (f"run 'r1' of DAG 'held' is running and the scheduler (job {job.job_id}) is working on it"
                in capsys.readouterr().err)
        assert main(["tasks", "mark-failed", "held", "hold", "r1"]) == 0
        wait_for(run_state_is("held", "r1", "failed"), what="held to fail once hold is marked")
        assert main(["dags", "delete-run", "held", "r1"]) == 0, "a finished run can go"
        assert count(DagRun, dag_id="held", run_id="r1") == 0 and count(TaskInstance, dag_id="held", run_id="r1") == 0

        assert main(["dags", "pause", "quick"]) == 0
        trigger_dag("quick", run_id="waiting")
        assert main(["dags", "delete-run", "quick", "waiting"]) == 0, "a paused DAG's queued run can go"

    assert main(["dags", "delete", "flow", "-y"]) == 0
    assert count(DagRun, dag_id="flow") == 0 and count(TaskInstance, dag_id="flow") == 0
    assert count(DagModel, dag_id="flow") == 0
    assert main(["dags", "list", "-o", "json"]) == 0
    assert '"dag_id": "flow"' in capsys.readouterr().out, "its file is still there: the next parse stores it"
