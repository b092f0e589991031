"""Shared test fixtures: an isolated crossdock home per test, and real-service gates.

Tests that need Redis, RabbitMQ or PostgreSQL talk to the real servers on 127.0.0.1.
On a machine without them those tests skip, saying which server they wanted; with
``CROSSDOCK_REQUIRE_SERVICES=1`` (as CI sets) a missing server fails the test instead.
"""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"

SERVICES = {
    "postgres": ("PostgreSQL", "127.0.0.1", 5432),
    "redis": ("Redis", "127.0.0.1", 6379),
    "rabbitmq": ("RabbitMQ", "127.0.0.1", 5672),
}


def services_required() -> bool:
    return os.environ.get("CROSSDOCK_REQUIRE_SERVICES") == "1"


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str | None = None, port: int | None = None) -> None:
    """Skip (or, when services are required, fail) unless the named server answers."""
    label, default_host, default_port = SERVICES.get(name, (name, host, port))
    host, port = host or default_host, port or default_port
    if port_open(host, port):
        return
    message = f"needs the {label} server on {host}:{port}"
    if services_required():
        pytest.fail(message + " (CROSSDOCK_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def crossdock_home(tmp_path, monkeypatch):
    """Every test gets its own CROSSDOCK_HOME (SQLite DB, logs, dags) and no stray overrides."""
    from crossdock.configuration import conf

    for name in list(os.environ):
        if name.startswith("CROSSDOCK__"):
            monkeypatch.delenv(name)
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
