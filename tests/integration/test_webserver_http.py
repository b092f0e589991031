"""The REST API over real HTTP: uvicorn on a free port, a real scheduler (LocalExecutor) making
the runs, SQLite and PostgreSQL for the listings, and the ``crossdock webserver`` command.

Everything here goes through a socket: what an Airflow script or the UI sees, headers and
status codes included.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import httpx
import pytest
from operations_support import scheduler_running, states, wait_for
from webserver_support import basic, parse_into_db, write_showcase

from crossdock.configuration import conf
from crossdock.operations import trigger_dag

RUN = "r1"


@pytest.fixture
def finished_run(backend, dags_folder):
    """showcase parsed and run once to its end by the real scheduler (stage.broken exits 1)."""
    write_showcase(dags_folder)
    result = parse_into_db(dags_folder)
    assert list(result.import_errors) == [str(dags_folder / "broken_dag.py")]
    trigger_dag("showcase", run_id=RUN)
    with scheduler_running():
        wait_for(lambda: states("showcase", RUN)[0] in ("success", "failed"), what="the run to finish")
    return RUN


@pytest.fixture
def server():
    from crossdock.www.server import WebServer

    with WebServer(host="127.0.0.1", port=0) as served:
        with httpx.Client(base_url=served.url, timeout=10) as client:
            yield client


def test_listings_over_http(finished_run, server):
    dags = server.get("/api/v1/dags").json()
    assert [d["dag_id"] for d in dags["dags"]] == ["other", "showcase"] and dags["total_entries"] == 2
    assert server.get("/api/v1/dags", params={"limit": 1, "offset": 1}).json()["dags"][0]["dag_id"] == "showcase"
    runs = server.get("/api/v1/dags/showcase/dagRuns").json()
    assert [(r["dag_run_id"], r["state"]) for r in runs["dag_runs"]] == [(RUN, "failed")]
    tis = server.get(f"/api/v1/dags/showcase/dagRuns/{RUN}/taskInstances", params={"limit": 100}).json()
    assert tis["total_entries"] == 7
    by_id = {(ti["task_id"], ti["map_index"]): ti for ti in tis["task_instances"]}
    start = by_id[("start", -1)]
    assert start["executor"] == "LocalExecutor" and start["hostname"] and start["duration"] is not None
    assert start["routing_reason"] and by_id[("stage.broken", -1)]["state"] == "failed"
    log = server.get(f"/api/v1/dags/showcase/dagRuns/{RUN}/taskInstances/start/logs/1").json()
    assert "start" in log["content"] and log["finished"] and log["source"].startswith("log file")
    errors = server.get("/api/v1/importErrors").json()
    assert errors["total_entries"] == 1 and "broken on purpose" in errors["import_errors"][0]["stack_trace"]
    pools = server.get("/api/v1/pools").json()
    assert pools["pools"][0]["name"] == "default_pool"
    missing = server.get("/api/v1/dags/showcase/dagRuns/nope")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["detail"].startswith("DAG 'showcase' has no run 'nope'")
    assert server.get("/api/v1/dags", params={"limit": -1}).status_code == 400


def test_clear_over_http_is_applied_by_the_running_scheduler(finished_run, server):
    """With a scheduler active the clear is a request it applies; the task runs again (and fails again)."""
    with scheduler_running():
        response = server.post("/api/v1/dags/showcase/clearTaskInstances",
                               json={"dag_run_id": RUN, "task_ids": ["stage.broken"], "dry_run": False})
        assert response.status_code == 200, response.text
        (cleared,) = response.json()["task_instances"]
        assert cleared["applied"] is False and cleared["request_id"] is not None

        def rerun():
            ti = server.get(f"/api/v1/dags/showcase/dagRuns/{RUN}/taskInstances/stage.broken").json()
            return ti if ti["try_number"] == 2 and ti["state"] == "failed" else None

        wait_for(rerun, what="stage.broken to run a second try")
    second = server.get(f"/api/v1/dags/showcase/dagRuns/{RUN}/taskInstances/stage.broken/logs/2").json()
    assert "exited with code 1" in second["content"]


def test_sign_in_over_http(monkeypatch, backend):
    from crossdock.www.passwords import hash_password
    from crossdock.www.server import WebServer

    monkeypatch.setenv("CROSSDOCK__WEBSERVER__AUTH_USERS",
                       json.dumps({"ann": {"password_hash": hash_password("pw-of-ann", n=2 ** 8)}}))
    conf.reload()
    with WebServer(host="127.0.0.1", port=0) as served, httpx.Client(base_url=served.url) as client:
        assert client.get("/api/v1/dags").status_code == 401
        assert client.get("/api/v1/dags", headers=basic("ann", "pw-of-ann")).status_code == 200
        token = client.post("/api/v1/crossdock/session", json={"username": "ann", "password": "pw-of-ann"}).json()
        assert client.get("/api/v1/dags", headers={"Authorization": f"Bearer {token['token']}"}).status_code == 200


def _environment():
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_the_command_refuses_any_address_but_loopback_without_sign_in():
    done = subprocess.run([sys.executable, "-m", "crossdock", "webserver", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=60, env=_environment())
    assert done.returncode == 1
    assert "0.0.0.0" in done.stderr and "auth_users" in done.stderr and "Traceback" not in done.stderr


def test_the_command_prints_its_address_serves_and_stops_on_sigterm():
    process = subprocess.Popen([sys.executable, "-m", "crossdock", "webserver", "--port", "0"], env=_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"webserver at (http://127\.0\.0\.1:\d+) ", line)
        assert match, line
        assert httpx.get(f"{match.group(1)}/api/v1/health", timeout=10).json()["metadatabase"]["status"] == "healthy"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
