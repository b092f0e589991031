"""Shared test fixtures: an isolated crossdock home per test, and real-service gates.

Tests that need Redis, RabbitMQ or PostgreSQL talk to the real servers on 127.0.0.1.
On a machine without them those tests skip, saying which server they wanted; with
``CROSSDOCK_REQUIRE_SERVICES=1`` (as CI sets) a missing server fails the test instead.
"""

from __future__ import annotations

import os

import pytest

from service_gates import POSTGRES_URL, require_service, start_run_services, stop_run_services  # noqa: E402,F401


def pytest_sessionstart(session):
    """The run's own PostgreSQL database and Redis server (see ``service_gates``)."""
    start_run_services()


def pytest_sessionfinish(session, exitstatus):
    stop_run_services()


@pytest.fixture(autouse=True)
def crossdock_home(tmp_path, monkeypatch):
    """Every test gets its own CROSSDOCK_HOME (SQLite DB, logs, dags) and no stray overrides."""
    from crossdock.configuration import conf

    for name in list(os.environ):
        if name.startswith("CROSSDOCK__"):
            monkeypatch.delenv(name)
    # A test that replaces a killed scheduler waits for its lease to time out: 60 % of this
    # (the default, 10 s, would add six seconds to each; the fault tests set their own).
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__STANDBY_TAKEOVER_SECONDS", "2")
    # Suites run side by side: a metrics endpoint or web server a test starts picks a free
    # port, never 9464 or 8080.
    monkeypatch.setenv("CROSSDOCK__METRICS__PORT", "0")
    monkeypatch.setenv("CROSSDOCK__WEBSERVER__PORT", "0")
    # Tests trigger the DAGs they just wrote; the paused-at-creation default has tests of its own.
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
    home = tmp_path / "crossdock-home"
    home.mkdir()
    monkeypatch.setenv("CROSSDOCK_HOME", str(home))
    monkeypatch.delenv("CROSSDOCK_CONFIG", raising=False)
    conf.reload()
    yield home
    conf.reload()
    from crossdock import database

    database.dispose_engine()


@pytest.fixture
def postgres_url(monkeypatch):
    """Point the metadata database at the real PostgreSQL, in a fresh schema-less reset state."""
    require_service("postgres")
    from crossdock import database
    from crossdock.configuration import conf

    monkeypatch.setenv("CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN", POSTGRES_URL)
    conf.reload()
    database.reset()
    yield POSTGRES_URL
    database.dispose_engine()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    """Run the test once on SQLite and once on the real PostgreSQL (the two supported databases)."""
    if request.param == "postgres":
        request.getfixturevalue("postgres_url")
    else:
        from crossdock import database

        database.migrate()
    return request.param


@pytest.fixture
def dags_folder(crossdock_home, monkeypatch):
    """An empty ``[core] dags_folder`` inside the test's home; modules that need more extend it."""
    from crossdock.configuration import conf

    folder = crossdock_home / "dags"
    folder.mkdir()
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(folder))
    conf.reload()
    return folder
