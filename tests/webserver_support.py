"""Test support for the REST API and UI: a DAG folder that exercises every view, and clients.

``SHOWCASE`` has a plain chain, a task group holding a failing task, and a task mapped
over a literal list, so one run covers the grid's groups, mapped cells and a failure.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import textwrap
import warnings
from pathlib import Path
from typing import Iterator

SHOWCASE = textwrap.dedent("""
    from datetime import datetime

    from crossdock import DAG, BashOperator, task
    from crossdock.dag.task_group import TaskGroup

    with DAG("showcase", schedule=None, tags=["ui", "example"], description="groups, mapping, a failure") as dag:
        start = BashOperator(task_id="start", bash_command="echo start")
        with TaskGroup("stage") as stage:
            fine = BashOperator(task_id="fine", bash_command="true", queue="special")
            broken = BashOperator(task_id="broken", bash_command="exit 1")
            fine >> broken
        after = BashOperator(task_id="after", bash_command="true")

        @task
        def double(x):
            return 2 * x

        start >> stage >> after
        start >> double.expand(x=[1, 2, 3])

    with DAG("other", schedule="@daily", start_date=datetime(2024, 1, 1), tags=["nightly"], catchup=False) as other:
        BashOperator(task_id="only", bash_command="true")
""")
BROKEN = "from crossdock import DAG\nraise RuntimeError('broken on purpose')\n"


def write_showcase(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "showcase.py").write_text(SHOWCASE, encoding="utf-8")
    (folder / "broken_dag.py").write_text(BROKEN, encoding="utf-8")


def parse_into_db(folder: Path):
    from crossdock.dag.dag_store import store_parse_result
    from crossdock.dag.processor import parse_dag_folder

    result = parse_dag_folder(str(folder))
    store_parse_result(result)
    return result


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def api_client(app):
    """Starlette's in-process client, addressed as this machine (the request guard checks Host)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

        return TestClient(app, base_url="http://127.0.0.1")


@contextlib.contextmanager
def home_being_seeded(home: Path) -> Iterator[Path]:
    """Point crossdock at ``home`` (migrated, its DAGs folder made) while a module's data is made there.

    Module fixtures make data once; each test then copies the home (:func:`use_seeded_home`).
    """
    import pytest

    from crossdock import database
    from crossdock.configuration import conf

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CROSSDOCK_HOME", str(home))
        patch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(home / "dags"))
        patch.setenv("CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
        patch.setenv("CROSSDOCK__SCHEDULER__MAX_LOOP_SLEEP", "0.001")
        patch.setenv("CROSSDOCK__SCHEDULER__NEW_RUNS_POLL_INTERVAL", "0")
        conf.reload()
        database.dispose_engine()
        database.migrate()
        (home / "dags").mkdir(exist_ok=True)
        try:
            yield home
        finally:
            database.dispose_engine()
    conf.reload()


def use_seeded_home(seeded: Path, home: Path, monkeypatch) -> None:
    """Copy a seeded home into the test's own (database, logs, DAG files) and point at its DAGs."""
    from crossdock.configuration import conf

    shutil.copytree(seeded, home, dirs_exist_ok=True)
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(home / "dags"))
    conf.reload()
