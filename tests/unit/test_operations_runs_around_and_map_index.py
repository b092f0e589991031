"""Clear and mark reach past / future runs (Airflow's Past and Future) and single elements
of a mapped task, from the CLI and the REST API; with no scheduler the change is written at once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from crossdock import database
from crossdock.cli.main import main
from crossdock.database import create_session
from crossdock.models import DagRun, TaskInstance
from crossdock.operations import BadRequest, clear_task_instances

from operations_support import parse, write_ledger_dags
from webserver_support import api_client

DAY = datetime(2024, 3, 1, tzinfo=timezone.utc)
RUNS = ["before", "middle", "after"]


@pytest.fixture
def three_failed_runs(dags_folder, crossdock_home):
    """Three finished runs of ``flow`` a day apart; ``b`` failed in each as a mapped task of three elements."""
    database.migrate()
    write_ledger_dags(dags_folder, ledger=crossdock_home / "ledger.txt", gate=crossdock_home / "gate")
    parse(dags_folder)
    with create_session() as session:
        for day, run_id in enumerate(RUNS):
            date = DAY + timedelta(days=day)
            session.add(DagRun(dag_id="flow", run_id=run_id, run_type="manual", logical_date=date, state="failed",
                               queued_at=date, conf={}))
            for map_index in range(3):
                session.add(TaskInstance(dag_id="flow", task_id="b", run_id=run_id, map_index=map_index,
                                         try_number=1, max_tries=0, state="failed"))


def _states() -> dict[tuple[str, int], str | None]:
    with create_session() as session:
        return {(ti.run_id, ti.map_index): ti.state
                for ti in session.scalars(select(TaskInstance).where(TaskInstance.task_id == "b"))}


def test_clear_with_include_past_or_future_reaches_the_runs_on_that_side_only(three_failed_runs):
    assert main(["tasks", "clear", "flow", "--run-id", "middle", "--include-past", "--map-index", "1", "-y"]) == 0
    cleared = {key for key, state in _states().items() if state is None}
    assert cleared == {("before", 1), ("middle", 1)}
    rows = clear_task_instances("flow", run_id="middle", include_future=True, dry_run=True)
    assert {(row["run_id"], row["map_index"]) for row in rows} == {
        ("middle", 0), ("middle", 2), ("after", 0), ("after", 1), ("after", 2)}  # the cleared one has no state
    with pytest.raises(BadRequest, match="relative to one run"):
        clear_task_instances("flow", include_past=True)


def test_marking_one_map_index_leaves_the_other_elements_alone(three_failed_runs, capsys):
    assert main(["tasks", "mark-success", "flow", "b", "after", "--map-index", "2"]) == 0
    states = _states()
    assert states[("after", 2)] == "success"
    assert [states[("after", i)] for i in (0, 1)] == ["failed", "failed"]
    assert main(["tasks", "mark-success", "flow", "b", "after", "--map-index", "7"]) == 1
    assert "map index 7" in capsys.readouterr().err


def test_the_api_marks_a_mapped_element_and_clears_into_the_past(three_failed_runs):
    from crossdock.www.app import create_app

    with api_client(create_app()) as client:
        _mark_and_clear_over_http(client)


def _mark_and_clear_over_http(client):
    marked = client.patch("/api/v1/dags/flow/dagRuns/middle/taskInstances/b/0",
                          json={"new_state": "success", "include_past": True})
    assert marked.status_code == 200, marked.text
    states = _states()
    assert states[("middle", 0)] == states[("before", 0)] == "success"
    assert states[("after", 0)] == "failed" and states[("middle", 1)] == "failed"
    done = client.post("/api/v1/dags/flow/clearTaskInstances",
                       json={"dag_run_id": "after", "include_past": True, "dry_run": False, "task_ids": ["b"]})
    assert done.status_code == 200, done.text
    assert {(ti["dag_run_id"]) for ti in done.json()["task_instances"]} == set(RUNS)
