"""The REST API's actions and log reads, in-process, with no scheduler running.

With no scheduler holding the lease a clear or mark is written at once (``applied``);
with one, it becomes a request the scheduler applies (covered by the operations tests
and, through the UI, by the browser test). Logs: offsets, live chunks cut at a line end,
and secrets masked even where the try wrote them past Python.
"""

from __future__ import annotations

from api_fixtures import RUN, client, prepared  # noqa: F401 - fixtures

from crossdock.database import create_session
from crossdock.runner.task_log import task_log_path

TIS = f"/api/v1/dags/showcase/dagRuns/{RUN}/taskInstances"


def _state(client, task_id):
    return client.get(f"{TIS}/{task_id}").json()["state"]


def test_trigger_with_conf_and_date_then_a_taken_run_id_is_409(client):
    created = client.post("/api/v1/dags/showcase/dagRuns",
                          json={"dag_run_id": "mine", "conf": {"size": 3}, "logical_date": "2024-05-01T10:00:00Z"})
    assert created.status_code == 200, created.text
    run = created.json()
    assert (run["dag_run_id"], run["state"], run["conf"]) == ("mine", "queued", {"size": 3})
    assert run["logical_date"].startswith("2024-05-01T10:00:00")
    again = client.post("/api/v1/dags/showcase/dagRuns", json={"dag_run_id": "mine"})
    assert again.status_code == 409 and "mine" in again.json()["detail"]
    assert client.post("/api/v1/dags/nope/dagRuns", json={}).status_code == 404


def test_pause_and_unpause(client):
    paused = client.patch("/api/v1/dags/showcase", json={"is_paused": True})
    assert paused.status_code == 200 and paused.json()["is_paused"] is True
    assert client.get("/api/v1/dags", params={"paused": "true"}).json()["dags"][0]["dag_id"] == "showcase"
    assert client.patch("/api/v1/dags/showcase", json={"is_paused": False}).json()["is_paused"] is False
    assert client.patch("/api/v1/dags/showcase", json={"is_paused": "maybe"}).status_code == 400
    assert client.patch("/api/v1/dags/showcase", params={"update_mask": "tags"},
                        json={"is_paused": True}).status_code == 400


def test_clear_lists_by_default_and_clears_with_dry_run_false(client):
    planned = client.post("/api/v1/dags/showcase/clearTaskInstances", json={"dag_run_id": RUN})
    assert planned.status_code == 200
    # Airflow's defaults: a dry run of the failed (and upstream_failed) task instances only.
    assert sorted(ti["task_id"] for ti in planned.json()["task_instances"]) == ["after", "stage.broken"]
    assert _state(client, "stage.broken") == "failed"
    done = client.post("/api/v1/dags/showcase/clearTaskInstances",
                       json={"dag_run_id": RUN, "task_ids": ["stage.broken"], "include_downstream": True,
                             "only_failed": False, "dry_run": False}).json()["task_instances"]
    assert {ti["task_id"] for ti in done} == {"stage.broken", "after"}
    assert all(ti["applied"] and ti["dag_run_id"] == RUN and ti["execution_date"] for ti in done)
    assert _state(client, "stage.broken") is None and _state(client, "after") is None
    assert client.get(f"/api/v1/dags/showcase/dagRuns/{RUN}").json()["state"] != "failed"
    refused = client.post("/api/v1/dags/showcase/clearTaskInstances", json={"include_future": True})
    assert refused.status_code == 400


def test_mark_success_resumes_downstream_and_bad_states_are_refused(client):
    marked = client.patch(f"{TIS}/stage.broken", json={"new_state": "success"})
    assert marked.status_code == 200, marked.text
    body = marked.json()
    assert (body["task_id"], body["action"], body["state"]) == ("stage.broken", "success", "failed")
    assert body["applied"] is True
    assert {(ti["task_id"], ti["action"]) for ti in body["task_instances"]} == {("stage.broken", "success"),
                                                                                ("after", "clear")}
    assert _state(client, "stage.broken") == "success" and _state(client, "after") is None
    assert client.patch(f"{TIS}/start", json={"new_state": "skipped"}).status_code == 400
    assert client.patch(f"{TIS}/start", json={"new_state": "failed", "dry_run": True}).status_code == 400
    assert client.patch(f"{TIS}/nope", json={"new_state": "failed"}).status_code == 404


def test_delete_a_finished_run(client):
    assert client.delete(f"/api/v1/dags/showcase/dagRuns/{RUN}").status_code == 204
    assert client.get(f"/api/v1/dags/showcase/dagRuns/{RUN}").status_code == 404
    assert client.delete(f"/api/v1/dags/showcase/dagRuns/{RUN}").status_code == 404


def test_pools_are_created_changed_listed_and_deleted(client):
    created = client.post("/api/v1/pools", json={"name": "gpu", "slots": 2, "description": "two cards"})
    assert created.status_code == 200 and created.json()["open_slots"] == 2
    assert client.post("/api/v1/pools", json={"name": "gpu", "slots": 5}).status_code == 409
    changed = client.patch("/api/v1/pools/gpu", json={"slots": 4}).json()
    assert (changed["slots"], changed["description"]) == (4, "two cards")
    assert client.patch("/api/v1/pools/gpu", json={"name": "cpu"}).status_code == 400
    names = [pool["name"] for pool in client.get("/api/v1/pools").json()["pools"]]
    assert names == ["default_pool", "gpu"]
    assert client.post("/api/v1/pools", json={"name": "bad name!", "slots": 1}).status_code == 400
    assert client.delete("/api/v1/pools/default_pool").status_code == 400
    assert client.delete("/api/v1/pools/gpu").status_code == 204
    assert client.get("/api/v1/pools/gpu").status_code == 404
    imported = client.post("/api/v1/crossdock/pools/import", json={"a": {"slots": 1}, "b": {"slots": 2}})
    assert imported.json()["total_entries"] == 2
    assert client.get("/api/v1/crossdock/pools/export").json()["b"] == {"slots": 2, "description": ""}


def _write_log(task_id, text, try_number=1):
    path = task_log_path(dag_id="showcase", task_id=task_id, run_id=RUN, try_number=try_number)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_finished_try_log_in_pieces_with_the_continuation_token(client):
    _write_log("stage.broken", "line one\nline two\nlast line without newline")
    first = client.get(f"{TIS}/stage.broken/logs/1").json()
    assert first["content"] == "line one\nline two\nlast line without newline" and first["finished"] is True
    again = client.get(f"{TIS}/stage.broken/logs/1", params={"token": "9"}).json()
    assert again["content"] == "line two\nlast line without newline"
    text = client.get(f"{TIS}/stage.broken/logs/1", headers={"accept": "text/plain"})
    assert text.headers["content-type"].startswith("text/plain") and text.text.startswith("line one")
    assert client.get(f"{TIS}/stage.broken/logs/2").status_code == 404
    assert client.get(f"{TIS}/stage.broken/logs/0").status_code == 404
    missing = client.get(f"{TIS}/start/logs/1").json()
    assert missing["content"] == "" and missing["finished"] and missing["source"].startswith("no log at")


def test_a_long_log_comes_in_whole_lines_of_at_most_max_bytes(client):
    from crossdock.operations.reads.logs import read_task_log

    text = "".join(f"line {n}\n" for n in range(1, 30))
    _write_log("stage.broken", text)
    pieces, offset, finished = [], 0, False
    while not finished:
        chunk = read_task_log("showcase", RUN, "stage.broken", try_number=1, offset=offset, max_bytes=20)
        assert chunk["content"].endswith("\n") and len(chunk["content"]) <= 20
        pieces.append(chunk["content"])
        offset, finished = chunk["offset"], chunk["finished"]
    assert "".join(pieces) == text and len(pieces) > 5


def test_a_running_try_is_read_up_to_its_last_full_line(client):
    from sqlalchemy import update

    from crossdock.models import TaskInstance

    with create_session() as session:  # what the scheduler writes while a try runs
        session.execute(update(TaskInstance).where(TaskInstance.task_id == "start").values(state="running"))
    _write_log("start", "started\nhalf a li")
    chunk = client.get(f"{TIS}/start/logs/1").json()
    assert (chunk["content"], chunk["finished"], chunk["state"]) == ("started\n", False, "running")
    _write_log("start", "started\nhalf a line, now whole\n")
    follow = client.get(f"{TIS}/start/logs/1", params={"token": chunk["continuation_token"]}).json()
    assert follow["content"] == "half a line, now whole\n" and follow["finished"] is False


def test_log_reads_mask_connection_passwords_the_try_echoed(client, monkeypatch):
    monkeypatch.setenv("CROSSDOCK_CONN_WAREHOUSE", "postgres://loader:s3cret-Pa55@db.example:5432/dw")
    monkeypatch.setenv("CROSSDOCK_VAR_API_TOKEN", "tok-9f8e7d6c5b")
    from crossdock.operations.reads import connections

    monkeypatch.setattr(connections, "_refreshed_at", None)  # read the secrets again now
    _write_log("stage.fine", "connecting with s3cret-Pa55\nheader Bearer tok-9f8e7d6c5b\n")
    content = client.get(f"{TIS}/stage.fine/logs/1").json()["content"]
    assert "s3cret-Pa55" not in content and "tok-9f8e7d6c5b" not in content
    assert content == "connecting with ***\nheader Bearer ***\n"
    listed = client.get("/api/v1/connections").json()
    warehouse = next(c for c in listed["connections"] if c["connection_id"] == "warehouse")
    assert warehouse["has_password"] is True and "s3cret" not in str(listed)
    assert client.get("/api/v1/connections/warehouse").json()["login"] == "loader"
    assert client.get("/api/v1/connections/none_such").status_code == 404
