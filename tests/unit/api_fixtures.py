"""Fixtures of the REST API's in-process tests: one scheduled run of ``showcase``, copied per test.

The run is made once per module by the real scheduler loop with a scripted executor
(``stage.broken`` fails, so ``after`` is upstream_failed); each test gets its own copy of
the home (database, logs) and a TestClient on a fresh application.
"""

from __future__ import annotations

import pytest
from scheduler_support import ScriptedExecutor
from webserver_support import api_client, home_being_seeded, parse_into_db, use_seeded_home, write_showcase

from crossdock.state import TaskInstanceState as S

RUN = "r1"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A home holding one finished run of showcase (and a queued run of other)."""
    from crossdock.database import create_session
    from crossdock.scheduler.dag_runs import create_dag_run
    from crossdock.scheduler.scheduler_job import SchedulerJob

    with home_being_seeded(tmp_path_factory.mktemp("api-home")) as home:
        write_showcase(home / "dags")
        parse_into_db(home / "dags")
        with create_session() as session:
            create_dag_run(session, dag_id="showcase", run_id=RUN)
        job = SchedulerJob(executors=[ScriptedExecutor(outcomes={"stage.broken": [S.FAILED]})], parse_dags=False)
        job.run(stop_when=lambda j: not j.runs and j.loop_count > 1, max_loops=2000)
        with create_session() as session:
            create_dag_run(session, dag_id="other", run_id="waiting")
    return home


@pytest.fixture
def client(prepared, crossdock_home, monkeypatch):
    use_seeded_home(prepared, crossdock_home, monkeypatch)
    from crossdock.www.app import create_app

    with api_client(create_app()) as client:
        yield client
