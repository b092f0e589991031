"""Real-service gates shared by the tests: which servers, and skip-or-fail when one is down.

A test run owns its data: it creates a PostgreSQL database of its own on the shared server
and starts a private ``redis-server`` on a spare port (the fault tests kill and restart it),
and removes both when the run ends, so two suites, or a suite and a benchmark, can run at
once on one machine. RabbitMQ tests use queue names unique to each test.

On a machine without the servers, service tests skip saying which server they wanted;
with ``CROSSDOCK_REQUIRE_SERVICES=1`` (as CI sets) a missing server fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
#: The database this run creates for itself (and drops at the end).
POSTGRES_DATABASE = f"crossdock_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
POSTGRES_ADMIN_URL = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/postgres"
POSTGRES_URL = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{POSTGRES_DATABASE}"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: The run's private Redis server.
REDIS_PORT = free_port()
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}"

SERVICES = {
    "postgres": ("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT),
    "redis": ("Redis (a private redis-server of this run)", "127.0.0.1", REDIS_PORT),
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
    if name == "postgres" and not _postgres_database_ready:
        _fail_or_skip(f"needs the {label} server on {host}:{port} (could not create {POSTGRES_DATABASE})")
    if port_open(host, port):
        return
    _fail_or_skip(f"needs the {label} server on {host}:{port}")


def _fail_or_skip(message: str) -> None:
    if services_required():
        pytest.fail(message + " (CROSSDOCK_REQUIRE_SERVICES=1)")
    pytest.skip(message)


# ---------------------------------------------------------------- the run's own data
_postgres_database_ready = False
_redis: "RedisServer | None" = None


class RedisServer:
    """A ``redis-server`` on a given port that keeps nothing on disk; tests may stop and restart it."""

    def __init__(self, port: int):
        self.port = port
        self.process: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="crossdock-redis-")

    def start(self, *, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir, "--logfile", os.path.join(self._dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port, timeout=0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        """Kill and start again: the server comes back empty, as a broker outage leaves it."""
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def redis_server() -> RedisServer:
    """The run's private Redis (fault tests restart it to play a broker outage)."""
    require_service("redis")
    assert _redis is not None
    return _redis


def _run_postgres_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as connection:
        connection.execute(statement)


def start_run_services() -> None:
    """Create this run's PostgreSQL database and start its Redis, where the servers allow."""
    global _postgres_database_ready, _redis
    if port_open(POSTGRES_HOST, POSTGRES_PORT):
        try:
            _run_postgres_admin(f'CREATE DATABASE "{POSTGRES_DATABASE}"')
            _postgres_database_ready = True
        except Exception:  # noqa: BLE001 - reported by require_service as a skip or failure
            _postgres_database_ready = False
    if shutil.which("redis-server"):
        server = RedisServer(REDIS_PORT)
        try:
            server.start()
            _redis = server
        except (OSError, RuntimeError):
            server.remove()


def stop_run_services() -> None:
    """Drop this run's database (ending its leftover connections) and stop its Redis."""
    if _redis is not None:
        _redis.remove()
    if _postgres_database_ready:
        try:
            _run_postgres_admin(f'DROP DATABASE IF EXISTS "{POSTGRES_DATABASE}" WITH (FORCE)')
        except Exception:  # noqa: BLE001 - nothing more to do at the end of a run
            pass
