"""Backfill (the issue's acceptance test): 30 daily intervals of a DAG with
``max_active_runs=3``, run by a real scheduler: never more than 3 runs at once, all 30
succeed, and the CLI prints progress as it waits."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from sqlalchemy import select

from crossdock.cli.main import main
from crossdock.database import create_session
from crossdock.models import DagRun
from crossdock.operations import set_paused

from kube_executor_support import use_dag_files
from operations_support import ledger_lines, parse, scheduler_running, write_ledger_dags

INTERVALS = 30
MAX_ACTIVE_RUNS = 3


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one moment (an end before a start at the same instant)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    open_now = most = 0
    for _, change in events:
        open_now += change
        most = max(most, open_now)
    return most


def test_backfill_of_30_days_keeps_max_active_runs_and_every_run_succeeds(crossdock_home, monkeypatch, capsys):
    folder = use_dag_files(crossdock_home, monkeypatch, SCHEDULER__MAX_LOOP_SLEEP="0.02")
    ledger = crossdock_home / "ledger.txt"
    write_ledger_dags(folder, ledger=ledger, gate=crossdock_home / "gate", daily=True)
    parse(folder)
    set_paused("daily", paused=True)  # no scheduled runs of its own; a backfill runs while paused, as Airflow's
    active_seen: list[int] = []

    def watch(job) -> bool:
        active_seen.append(sum(1 for run in job.runs.values() if run.dag_id == "daily"))
        return False

    with scheduler_running(parallelism=8, on_loop=watch):
        code = main(["dags", "backfill", "daily", "-s", "2024-01-01", "-e", "2024-01-30"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"backfill of 'daily': {INTERVALS} of {INTERVALS} run(s) succeeded" in out

    with create_session() as session:
        runs = list(session.scalars(select(DagRun).where(DagRun.dag_id == "daily").order_by(DagRun.logical_date)))
    assert [run.logical_date for run in runs] == [datetime(2024, 1, day, tzinfo=timezone.utc)
                                                  for day in range(1, INTERVALS + 1)]
    assert {run.state for run in runs} == {"success"} and {run.run_type for run in runs} == {"backfill"}
    assert most_at_once([(run.start_date, run.end_date) for run in runs]) <= MAX_ACTIVE_RUNS
    assert max(active_seen) <= MAX_ACTIVE_RUNS
    assert max(active_seen) > 1, "runs went one at a time: max_active_runs was not used"
    assert sorted(name for name, *_ in ledger_lines(ledger)) == ["work"] * INTERVALS

    done = [int(n) for n in re.findall(r"backfill of daily: runs (\d+)/30 done", out)]
    assert done[0] < done[-1] == INTERVALS and done == sorted(done), out


def test_backfill_reset_dagruns_runs_existing_runs_again(crossdock_home, monkeypatch, capsys):
    folder = use_dag_files(crossdock_home, monkeypatch, SCHEDULER__MAX_LOOP_SLEEP="0.02")
    ledger = crossdock_home / "ledger.txt"
    write_ledger_dags(folder, ledger=ledger, gate=crossdock_home / "gate", daily=True)
    parse(folder)
    set_paused("daily", paused=True)
    with scheduler_running():
        assert main(["dags", "backfill", "daily", "-s", "2024-01-01", "-e", "2024-01-02"]) == 0
        assert main(["dags", "backfill", "daily", "-s", "2024-01-01", "-e", "2024-01-02"]) == 0
        assert len(ledger_lines(ledger)) == 2, "existing successful runs are kept, not run again"
        assert main(["dags", "backfill", "daily", "-s", "2024-01-01", "-e", "2024-01-02", "--reset-dagruns",
                     "-y"]) == 0
    assert [(name, try_number) for name, try_number, *_ in ledger_lines(ledger)] == [("work", 1)] * 2 + [
        ("work", 2)] * 2
