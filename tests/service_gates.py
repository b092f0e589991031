"""Real-service gates shared by the tests: which servers, and skip-or-fail when one is down.

On a machine without the servers, service tests skip saying which server they wanted;
with ``CROSSDOCK_REQUIRE_SERVICES=1`` (as CI sets) a missing server fails the test.
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
