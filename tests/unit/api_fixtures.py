"""Fixtures of the REST API's in-process tests: one scheduled run of ``showcase``, copied per test.

The run is made once per module by the real scheduler loop with a scripted executor
(``stage.broken`` fails, so ``after`` is upstream_failed); each test gets its own copy of
the home (database, logs) and a TestClient on a fresh application.
"""

from __future__ import annotations

import shutil

import pytest
from scheduler_support import ScriptedExecutor
from webserver_support import api_client, parse_into_db, write_showcase

from crossdock import database
from crossdock.configuration import conf
from crossdock.state import TaskInstanceState as S

RUN = "r1"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A home holding one finished run of showcase (and a queued run of other)."""
    from crossdock.database import create_session
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    home = tmp_path_factory.mktemp("api-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CROSSDOCK_HOME", str(home))
        patch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(home / "dags"))
        patch.setenv("CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
        patch.setenv("CROSSDOCK__SCHEDULER__MAX_LOOP_SLEEP", "0.001")
        patch.setenv("CROSSDOCK__SCHEDULER__NEW_RUNS_POLL_INTERVAL", "0")
        conf.reload()
        database.dispose_engine()
        database.migrate()
        write_showcase(home / "dags")
        parse_into_db(home / "dags")
        with create_session() as session:
            create_dag_run(session, dag_id="showcase", run_id=RUN)
        job = SchedulerJob(executors=[ScriptedExecutor(outcomes={"stage.broken": [S.FAILED]})], parse_dags=False)
        job.run(stop_when=lambda j: not j.runs and j.loop_count > 1, max_loops=2000)
        with create_session() as session:
            create_dag_run(session, dag_id="other", run_id="waiting")
        database.dispose_engine()
    conf.reload()
    return home


@pytest.fixture
def client(prepared, crossdock_home, monkeypatch):
    shutil.copytree(prepared, crossdock_home, dirs_exist_ok=True)
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(crossdock_home / "dags"))
    conf.reload()
    from crossdock.www.app import create_app

    with api_client(create_app()) as client:
        yield client
