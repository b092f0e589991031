"""Pools: a pool set while the scheduler runs is used at once, a 1-slot pool runs its tasks
one at a time (ledger with timestamps), and the pools commands round-trip on SQLite and
PostgreSQL, with import/export in Airflow's JSON shape."""

from __future__ import annotations

import json

import pytest

from crossdock.cli.main import main
from crossdock.operations import trigger_dag

from kube_executor_support import use_dag_files
from operations_support import ledger_lines, parse, run_state_is, scheduler_running, states, wait_for, write_ledger_dags


def test_a_pool_set_while_the_scheduler_runs_is_used_and_one_slot_runs_its_tasks_one_at_a_time(
        crossdock_home, monkeypatch, capsys):
    folder = use_dag_files(crossdock_home, monkeypatch, SCHEDULER__MAX_LOOP_SLEEP="0.02")
    ledger = crossdock_home / "ledger.txt"
    write_ledger_dags(folder, ledger=ledger, gate=crossdock_home / "gate")
    parse(folder)
    with scheduler_running(parallelism=4):  # room for both tasks: only the pool keeps them apart
        assert main(["pools", "set", "single", "1", "one at a time"]) == 0
        trigger_dag("pooled", run_id="r1")
        wait_for(run_state_is("pooled", "r1", "success", "failed"), what="the pooled run to finish")
    run_state, tis = states("pooled", "r1")
    assert run_state == "success", {t: ti.failure_reason for t, ti in tis.items()}
    (first, _, start_1, end_1), (second, _, start_2, end_2) = sorted(
        ledger_lines(ledger), key=lambda line: line[2])
    assert {first, second} == {"nap_1", "nap_2"}
    assert end_1 <= start_2, f"the 1-slot pool ran both at once: {first} until {end_1}, {second} from {start_2}"


def test_pools_commands_round_trip_and_import_is_all_or_nothing(backend, tmp_path, capsys):
    assert main(["pools", "set", "etl", "4", "nightly loads", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0] == {
        "name": "etl", "slots": 4, "running_slots": 0, "queued_slots": 0, "open_slots": 4,
        "description": "nightly loads"}
    assert main(["pools", "set", "etl", "6", "-o", "json"]) == 0  # changed, description now empty
    capsys.readouterr()
    assert main(["pools", "get", "etl", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["slots"] == 6

    exported = tmp_path / "pools.json"
    assert main(["pools", "export", str(exported)]) == 0
    data = json.loads(exported.read_text())
    assert data["etl"] == {"slots": 6, "description": ""}
    assert data["default_pool"]["slots"] == 128, "default_pool has [core] default_pool_slots"

    assert main(["pools", "delete", "etl"]) == 0
    assert main(["pools", "get", "etl"]) == 1
    assert "pool 'etl' does not exist; pools: default_pool" in capsys.readouterr().err

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"etl": {"slots": 2}, "broken": {"slots": -1}}))
    assert main(["pools", "import", str(bad)]) == 1
    assert "pool 'broken': slots must be 0 or more, not -1" in capsys.readouterr().err
    assert main(["pools", "get", "etl"]) == 1, "a bad entry leaves every pool as it was"
    capsys.readouterr()

    assert main(["pools", "import", str(exported), "-o", "json"]) == 0
    assert {pool["name"]: pool["slots"] for pool in json.loads(capsys.readouterr().out)} == {
        "default_pool": 128, "etl": 6}
    assert main(["pools", "list", "-o", "json"]) == 0
    assert [pool["name"] for pool in json.loads(capsys.readouterr().out)] == ["default_pool", "etl"]


@pytest.mark.parametrize("argv, message", [
    (["pools", "delete", "default_pool"], "default_pool cannot be deleted"),
    (["pools", "delete", "ghost"], "pool 'ghost' does not exist"),
    (["pools", "set", "no spaces", "1"], "pool name 'no spaces' is not valid"),
    (["pools", "import", "/nonexistent/pools.json"], "cannot read pools file '/nonexistent/pools.json'"),
])
def test_bad_pool_commands_fail_in_one_line(crossdock_home, capsys, argv, message):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("crossdock: error: ") and message in err and err.count("\n") == 1, err
