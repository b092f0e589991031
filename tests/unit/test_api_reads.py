"""The REST API's reads, called in-process (FastAPI's TestClient) on a run the scheduler made.

Checked: Airflow's field names, paging, filters, crossdock's extras (routing reason, host,
task groups, recent runs, the grid) and the one error shape with meaningful statuses.
"""

from __future__ import annotations

from api_fixtures import RUN, client, prepared  # noqa: F401 - fixtures


def test_dag_list_has_airflow_fields_recent_runs_and_import_errors(client):
    body = client.get("/api/v1/dags").json()
    assert body["total_entries"] == 2
    by_id = {dag["dag_id"]: dag for dag in body["dags"]}
    showcase = by_id["showcase"]
    assert showcase["is_paused"] is False and showcase["description"] == "groups, mapping, a failure"
    assert showcase["tags"] == [{"name": "ui"}, {"name": "example"}]
    assert showcase["fileloc"].endswith("showcase.py") and showcase["has_import_errors"] is False
    assert [run["dag_run_id"] for run in showcase["recent_dag_runs"]] == [RUN]
    assert showcase["last_dag_run_state"] == "failed"
    assert by_id["other"]["schedule_interval"] == {"__type": "CronExpression", "value": "@daily"}
    errors = client.get("/api/v1/importErrors").json()
    assert errors["total_entries"] == 1
    assert errors["import_errors"][0]["filename"].endswith("broken_dag.py")
    assert "broken on purpose" in errors["import_errors"][0]["stack_trace"]


def test_dag_list_pages_and_filters(client):
    first = client.get("/api/v1/dags", params={"limit": 1}).json()
    second = client.get("/api/v1/dags", params={"limit": 1, "offset": 1}).json()
    assert [d["dag_id"] for d in first["dags"] + second["dags"]] == ["other", "showcase"]
    assert first["total_entries"] == second["total_entries"] == 2
    assert [d["dag_id"] for d in client.get("/api/v1/dags", params={"tags": "nightly"}).json()["dags"]] == ["other"]
    assert client.get("/api/v1/dags", params={"dag_id_pattern": "SHOW"}).json()["total_entries"] == 1
    assert client.get("/api/v1/dags", params={"paused": "true"}).json()["total_entries"] == 0


def test_runs_listed_newest_first_filtered_by_state_and_across_dags(client):
    runs = client.get("/api/v1/dags/showcase/dagRuns").json()
    assert runs["total_entries"] == 1
    run = runs["dag_runs"][0]
    assert (run["dag_run_id"], run["state"], run["run_type"]) == (RUN, "failed", "manual")
    assert run["logical_date"] == run["execution_date"] and run["end_date"] is not None
    every = client.get("/api/v1/dags/~/dagRuns", params={"state": ["queued"]}).json()
    assert [(r["dag_id"], r["dag_run_id"]) for r in every["dag_runs"]] == [("other", "waiting")]
    bad = client.get("/api/v1/dags/showcase/dagRuns", params={"state": "exploded"})
    assert bad.status_code == 400 and "exploded" in bad.json()["detail"]


def test_task_instances_say_where_each_went_and_why(client):
    body = client.get(f"/api/v1/dags/showcase/dagRuns/{RUN}/taskInstances").json()
    assert body["total_entries"] == 7  # start, stage.fine, stage.broken, after, double x3
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in body["task_instances"]}
    fine = tis[("stage.fine", -1)]
    assert (fine["state"], fine["queue"], fine["try_number"]) == ("success", "special", 1)
    assert fine["hostname"] == "scripted-host"
    assert fine["executor"] and "special" in fine["routing_reason"]
    assert fine["duration"] is not None and fine["operator"] == "BashOperator"
    assert fine["task_group_id"] == "stage" and tis[("start", -1)]["task_group_id"] is None
    assert tis[("stage.broken", -1)]["failure_reason"] == "scripted failure of stage.broken try 1"
    assert tis[("after", -1)]["state"] == "upstream_failed"
    assert sorted(i for t, i in tis if t == "double") == [0, 1, 2]
    page = client.get(f"/api/v1/dags/showcase/dagRuns/{RUN}/taskInstances",
                      params={"limit": 2, "offset": 6, "state": ["success"]}).json()
    assert page["total_entries"] == 5 and len(page["task_instances"]) == 0
    mapped = client.get(f"/api/v1/dags/showcase/dagRuns/{RUN}/taskInstances/double/2").json()
    assert (mapped["map_index"], mapped["state"]) == (2, "success")
    listed = client.get(f"/api/v1/dags/showcase/dagRuns/{RUN}/taskInstances/double/listMapped").json()
    assert listed["total_entries"] == 3


def test_unknown_names_are_404_in_the_one_error_shape(client):
    for path, named in [("/api/v1/dags/nope", "'nope'"), ("/api/v1/dags/showcase/dagRuns/nope", "'nope'"),
                        (f"/api/v1/dags/showcase/dagRuns/{RUN}/taskInstances/nope", "'nope'"),
                        (f"/api/v1/dags/showcase/dagRuns/{RUN}/taskInstances/double/7", "map index 7"),
                        ("/api/v1/importErrors/999", "999"), ("/api/v1/pools/nope", "'nope'"),
                        ("/api/v1/no/such/route", "no API route")]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert set(body) == {"type", "title", "status", "detail"} and body["status"] == 404, body
        assert named in body["detail"], (path, body)
    assert "known DAGs: other, showcase" in client.get("/api/v1/dags/nope").json()["detail"]


def test_bad_input_is_400_not_422(client):
    for response in [client.get("/api/v1/dags", params={"limit": 0}),
                     client.get("/api/v1/dags", params={"offset": "x"}),
                     client.post("/api/v1/dags/showcase/dagRuns", json={"conf": [1, 2]}),
                     client.post("/api/v1/dags/showcase/dagRuns", json={"logical_date": "yesterday"}),
                     client.post("/api/v1/dags/showcase/dagRuns", json={"surprise": 1}),
                     client.post("/api/v1/dags/showcase/dagRuns", content=b"{not json",
                                 headers={"content-type": "application/json"})]:
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "errors/BadRequest"
    assert client.delete("/api/v1/dags").status_code == 405


def test_grid_nests_groups_sums_mapped_instances_and_colours_by_priority(client):
    grid = client.get("/api/v1/crossdock/dags/showcase/grid").json()
    assert [run["dag_run_id"] for run in grid["dag_runs"]] == [RUN]
    nodes = {node["id"]: node for node in grid["groups"]["children"]}
    assert list(nodes) == ["start", "stage", "double", "after"]
    stage = nodes["stage"]
    assert stage["is_group"] and [c["label"] for c in stage["children"]] == ["fine", "broken"]
    assert stage["instances"][0]["state"] == "failed"  # failed outranks success
    assert stage["instances"][0]["mapped_states"] == {"success": 1, "failed": 1}
    double = nodes["double"]["instances"][0]
    assert nodes["double"]["is_mapped"] and double["count"] == 3 and double["state"] == "success"
    assert nodes["start"]["instances"][0]["state"] == "success"
    assert client.get("/api/v1/crossdock/dags/showcase/grid", params={"num_runs": 0}).status_code == 400


def test_tasks_list_dependencies_and_groups_for_the_graph(client):
    body = client.get("/api/v1/dags/showcase/tasks").json()
    tasks = {task["task_id"]: task for task in body["tasks"]}
    assert body["total_entries"] == 5
    assert tasks["start"]["downstream_task_ids"] == ["double", "stage.fine"]
    assert tasks["double"]["is_mapped"] and not tasks["start"]["is_mapped"]
    assert body["task_groups"]["stage"]["tasks"] == ["stage.fine", "stage.broken"]


def test_run_progress_counts_states(client):
    body = client.get(f"/api/v1/crossdock/dags/showcase/dagRuns/{RUN}/progress").json()
    assert body["states"] == {"failed": 1, "success": 5, "upstream_failed": 1} and body["done"] == 7


def test_health_without_a_scheduler_says_so(client):
    body = client.get("/api/v1/health").json()
    assert body["metadatabase"]["status"] == "healthy"
    assert body["scheduler"]["status"] == "unhealthy"


def test_the_openapi_document_lists_the_routes_with_the_error_shape(client):
    document = client.get("/api/v1/openapi.json").json()
    assert {"/api/v1/dags", "/api/v1/dags/{dag_id}/clearTaskInstances", "/api/v1/pools/{pool_name}",
            "/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{task_try_number}",
            "/api/v1/crossdock/queues"} <= set(document["paths"])
    responses = document["paths"]["/api/v1/dags/{dag_id}"]["get"]["responses"]
    assert "422" not in responses and "404" in responses
    assert document["components"]["schemas"]["Error"]["required"] == ["type", "title", "status", "detail"]
