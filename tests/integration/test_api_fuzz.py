"""The OpenAPI document fuzzed with schemathesis: no generated request gets a 500.

Every operation of ``/api/v1/openapi.json`` is called with requests generated from the
document (valid and invalid values, odd text, huge numbers); half of the generated path
parameters are swapped for names that exist (the showcase DAG, its run and tasks), so
the routes are explored past their 404s too. Kept bounded: a few examples per operation,
in-process (ASGI), on a database seeded once for the module.
"""

from __future__ import annotations

import shutil
import warnings

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from operations_support import parse, scheduler_running, states, wait_for
from webserver_support import home_being_seeded, use_seeded_home, write_showcase

from crossdock import database
from crossdock.operations import trigger_dag

#: Examples per operation: enough to reach odd values, few enough for a few seconds in all.
EXAMPLES = 5
KNOWN = {"dag_id": "showcase", "dag_run_id": "r1", "task_id": "stage.broken", "task_try_number": 1,
         "pool_name": "default_pool", "map_index": 1, "connection_id": "warehouse"}

@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """showcase run once by the real scheduler, with a pool and a connection defined."""
    with home_being_seeded(tmp_path_factory.mktemp("fuzz-home")) as home:
        write_showcase(home / "dags")
        (home / "dags" / "broken_dag.py").unlink()
        parse(home / "dags")
        trigger_dag("showcase", run_id="r1")
        with scheduler_running():
            wait_for(lambda: states("showcase", "r1")[0] in ("success", "failed"), what="the run to finish")
    return home


@pytest.fixture
def api_schema(seeded, crossdock_home, monkeypatch):
    monkeypatch.setenv("CROSSDOCK_CONN_WAREHOUSE", "postgres://loader:s3cret-Pa55@db.example:5432/dw")
    use_seeded_home(seeded, crossdock_home, monkeypatch)
    from crossdock.www.app import OPENAPI_URL, create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # schemathesis's ASGI client names the host "testserver": the name this app is served as.
        loaded = schemathesis.openapi.from_asgi(OPENAPI_URL, create_app(listen_host="testserver"))
    return loaded


def _strategies(operation):
    """Valid and invalid requests, each also with the path's names swapped for existing ones."""
    from schemathesis import GenerationMode

    names = {parameter.name for parameter in operation.path_parameters}
    known = {name: value for name, value in KNOWN.items() if name in names}
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        yield operation.as_strategy(mode)
        if known:
            yield operation.as_strategy(mode, path_parameters=known)


def test_no_generated_request_gets_a_server_error(api_schema, seeded, crossdock_home):
    from hypothesis import given
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        database.dispose_engine()  # each operation starts from the seeded database (a DELETE ran before)
        shutil.copyfile(seeded / "crossdock.db", crossdock_home / "crossdock.db")

        @given(case=st.one_of(*_strategies(operation)))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case):
            case.call_and_validate(checks=checks)

        try:
            call()
        except Exception as exc:  # noqa: BLE001 - every operation is tried; all failures are shown
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
