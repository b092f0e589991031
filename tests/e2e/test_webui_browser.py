"""The web UI in a real browser (Debian's chromium, headless, driven by Playwright) on a
``crossdock standalone`` with the example DAGs and the embedded defaults (Celery workers
on the serverless broker, the local pod runtime): what a user sees and clicks.

One standalone and one browser serve the module. The DAG list shows the example DAGs and
pauses one with a confirmation; the grid shows a finished run in its states' colours; a
clear from the run page makes the scheduler run the task again; a backfill from the DAG
page runs each day; the log viewer shows a Celery try's and a pod's lines while they run and
keeps the finished pod's log; with sign-in on, the page signs a user in and out.
"""

from __future__ import annotations

import os
import textwrap

import httpx
import pytest
from process_helpers import wait_for
from service_gates import services_required
from test_standalone_lifecycle import Command, _environment

CHROMIUM = "/usr/bin/chromium"
#: Seconds the browser waits for what the page shows (runs and pods need a few).
UI_WAIT_MS = 60_000
GREEN = "rgb(0, 128, 0)"
RED = "rgb(255, 0, 0)"
DAGS = textwrap.dedent("""
    from datetime import datetime

    from crossdock import DAG, BashOperator

    with DAG("quick", schedule=None, tags=["browser"]) as quick:
        first = BashOperator(task_id="first", bash_command="echo first")
        first >> BashOperator(task_id="second", bash_command="echo second")
        BashOperator(task_id="broken", bash_command="echo about to fail; exit 3")

    with DAG("nightly", schedule="@daily", start_date=datetime(2024, 1, 1), catchup=False) as nightly:
        BashOperator(task_id="work", bash_command="echo nightly")

    with DAG("live", schedule=None, tags=["browser"]) as live:
        BashOperator(task_id="on_celery", queue="default",
                     bash_command='for i in $(seq 1 16); do echo "celery line $i"; sleep 0.25; done')
        BashOperator(task_id="in_a_pod", queue="kubernetes",
                     bash_command='for i in $(seq 1 32); do echo "pod line $i"; sleep 0.25; done')
""")


@pytest.fixture(autouse=True, scope="module")
def chromium_installed():
    """Skip without Debian's chromium; under CROSSDOCK_REQUIRE_SERVICES=1 (CI installs it) fail."""
    if not os.path.exists(CHROMIUM):
        message = f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"
        if services_required():
            pytest.fail(message + " (CROSSDOCK_REQUIRE_SERVICES=1)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """A standalone with the examples and this module's DAGs; yields the web server's URL."""
    home = tmp_path_factory.mktemp("ui-home")
    dags = home / "dags"
    dags.mkdir()
    (dags / "browser_dags.py").write_text(DAGS, encoding="utf-8")
    env = _environment(home, dags)
    env.update(CROSSDOCK__CORE__LOAD_EXAMPLES="True", CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
               CROSSDOCK__WEBSERVER__PORT="0", CROSSDOCK__METRICS__PORT="0",
               CROSSDOCK__SCHEDULER__DAG_DIR_LIST_INTERVAL="5")
    command = Command(["standalone"], env)
    try:
        line = command.wait_for_line("webserver at ")
        command.wait_for_line("crossdock standalone is running")
        yield line.split("webserver at ", 1)[1].split()[0]
    finally:
        command.kill_everything_left(command.descendants())
        print(f"standalone's output:\n{command.output[-6000:]}")  # shown when a test failed


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, standalone):
    context = browser.new_context(base_url=standalone)
    opened = context.new_page()
    opened.set_default_timeout(UI_WAIT_MS)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert not problems, f"the page's script failed: {problems}"


@pytest.fixture
def api(standalone):
    with httpx.Client(base_url=f"{standalone}/api/v1", timeout=10) as client:
        yield client


def _confirm(page) -> None:
    page.locator("#confirm[open] #confirm-ok").click()


def _background(page, selector: str) -> str:
    return page.locator(selector).first.evaluate("e => getComputedStyle(e).backgroundColor")


def _finished_run(api, dag_id: str) -> dict:
    run = {}

    def done():
        runs = api.get(f"/dags/{dag_id}/dagRuns").json()["dag_runs"]
        run.update(runs[0] if runs else {})
        return run.get("state") in ("success", "failed")

    assert wait_for(done, limit=UI_WAIT_MS / 1000), run
    return run


def test_the_dag_list_shows_the_example_dags_and_pauses_one_after_confirming(page, api):
    page.goto("/#/dags")
    for dag_id in ("example_bash_python", "example_fan_out", "hybrid_execution", "taskflow_values", "quick"):
        page.locator(f'tr[data-dag-id="{dag_id}"] a.dag-link').wait_for()
    toggle = page.locator('input[data-role="pause-toggle"][data-dag-id="example_fan_out"]')
    assert toggle.is_checked()  # checked means active
    toggle.click()
    page.locator("#confirm[open] #confirm-cancel").click()  # cancelled: nothing changes
    assert api.get("/dags/example_fan_out").json()["is_paused"] is False
    toggle.click()
    _confirm(page)
    assert wait_for(lambda: api.get("/dags/example_fan_out").json()["is_paused"], limit=10)
    page.locator('input[data-role="pause-toggle"][data-dag-id="example_fan_out"]:not(:checked)').wait_for()


def test_the_grid_shows_a_run_triggered_from_the_ui_in_its_states_colours(page, api):
    page.goto("/#/dags/quick")
    page.locator('button[data-role="trigger"]').click()
    _confirm(page)
    run = _finished_run(api, "quick")
    assert run["state"] == "failed"  # broken exits 3
    page.locator(f'.cell[data-task-id="second"][data-run-id="{run["dag_run_id"]}"][data-state="success"]').wait_for()
    page.locator(f'.cell[data-task-id="broken"][data-run-id="{run["dag_run_id"]}"][data-state="failed"]').wait_for()
    assert _background(page, '.cell[data-task-id="first"][data-state="success"]') == GREEN
    assert _background(page, '.cell[data-task-id="broken"][data-state="failed"]') == RED
    assert _background(page, f'.runbar[data-run-id="{run["dag_run_id"]}"]') == RED


def test_clear_from_the_run_page_reruns_the_task(page, api):
    if not api.get("/dags/quick/dagRuns").json()["dag_runs"]:  # run alone, without the grid test before it
        api.post("/dags/quick/dagRuns", json={})
    run = _finished_run(api, "quick")["dag_run_id"]
    page.goto(f"/#/dags/quick/runs/{run}")
    page.locator('tr[data-task-id="second"] button[data-role="clear"]').click()
    page.locator("#confirm[open] #confirm-body li", has_text="second (success)").wait_for()
    _confirm(page)

    second = {}

    def second_try():
        second.update(api.get(f"/dags/quick/dagRuns/{run}/taskInstances/second").json())
        return second["try_number"] == 2 and second["state"] == "success"

    assert wait_for(second_try, limit=UI_WAIT_MS / 1000), second
    page.locator('tr[data-task-id="second"] a[data-role="log"][data-try="2"]').wait_for()
    assert api.get(f"/dags/quick/dagRuns/{run}/taskInstances/first").json()["try_number"] == 1


def test_a_backfill_from_the_ui_runs_each_day_of_the_range(page, api):
    page.goto("/#/dags/nightly")
    page.locator('button[data-role="backfill"]').click()
    page.fill("#backfill-start", "2024-03-01")
    page.fill("#backfill-end", "2024-03-02")
    _confirm(page)
    page.locator("#notice.ok", has_text="2 run(s) of nightly").wait_for()
    for day in ("2024-03-01", "2024-03-02"):
        page.locator(f'.runbar[data-run-id="backfill__{day}T00:00:00+00:00"][data-state="success"]').wait_for()


def _follow_live(page, api, run: str, task_id: str, word: str, executor: str) -> str:
    """Open the try's log page, see its first lines while it runs; the text shown then."""
    page.goto(f"/#/dags/live/runs/{run}/tasks/{task_id}/logs/1")
    page.locator('#log-status [data-following="true"]').wait_for()
    page.locator("#log", has_text=f"{word} line 2\n").wait_for()  # (the page's CSP forbids evaluated strings)
    seen = page.locator("#log").text_content()
    ti = api.get(f"/dags/live/dagRuns/{run}/taskInstances/{task_id}").json()
    assert ti["state"] == "running" and ti["executor"] == executor, ti
    return seen


def test_the_log_viewer_follows_running_tries_on_celery_and_in_a_pod_and_keeps_the_pod_s_log(page, api):
    run = api.post("/dags/live/dagRuns", json={"dag_run_id": "live"}).json()["dag_run_id"]
    celery_seen = _follow_live(page, api, run, "on_celery", "celery", "CeleryExecutor")
    assert "celery line 16" not in celery_seen  # shown while the worker's try still talks
    pod_seen = _follow_live(page, api, run, "in_a_pod", "pod", "KubernetesExecutor")
    assert "pod line 32" not in pod_seen
    page.locator('#log-status [data-following="false"]').wait_for()
    final = page.locator("#log").text_content()
    assert all(f"pod line {i}\n" in final for i in range(1, 33)) and final.startswith(pod_seen[:40])
    celery_log = api.get(f"/dags/live/dagRuns/{run}/taskInstances/on_celery/logs/1").json()
    assert celery_log["finished"] and all(f"celery line {i}\n" in celery_log["content"] for i in range(1, 17))
    # The finished pod is gone; its container log was saved into the try's log first.
    assert wait_for(lambda: "container log of pod" in api.get(
        f"/dags/live/dagRuns/{run}/taskInstances/in_a_pod/logs/1").json()["content"], limit=30)


def test_with_sign_in_on_the_page_asks_for_a_user_and_signs_out(browser, crossdock_home, monkeypatch):
    """A server of its own with users configured (no scheduler needed to sign in)."""
    import json

    from crossdock import database
    from crossdock.configuration import conf
    from crossdock.www.passwords import hash_password
    from crossdock.www.server import WebServer

    monkeypatch.setenv("CROSSDOCK__WEBSERVER__AUTH_USERS",
                       json.dumps({"ann": {"password_hash": hash_password("ann-secret", n=2 ** 8)}}))
    conf.reload()
    database.migrate()
    with WebServer(host="127.0.0.1", port=0) as server:
        context = browser.new_context(base_url=server.url)
        page = context.new_page()
        page.set_default_timeout(UI_WAIT_MS)
        try:
            page.goto("/#/dags")
            page.locator("#signin-user").wait_for()  # sent to the sign-in form, not shown an error page
            page.fill("#signin-user", "ann")
            page.fill("#signin-password", "wrong")
            page.locator("form.signin button").click()
            page.locator("#notice.error", has_text="wrong user name or password").wait_for()
            page.fill("#signin-password", "ann-secret")
            page.locator("form.signin button").click()
            page.locator("#who", has_text="ann (admin)").wait_for()
            page.locator("main h1", has_text="DAGs").wait_for()
            token = page.evaluate("() => sessionStorage.getItem('crossdock.token')")
            assert httpx.get(f"{server.url}/api/v1/dags", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert not context.cookies()  # the token lives in the page, never in a cookie
            page.locator("#who button", has_text="Sign out").click()
            page.locator("#signin-user").wait_for()
            assert httpx.get(f"{server.url}/api/v1/dags", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        finally:
            context.close()
