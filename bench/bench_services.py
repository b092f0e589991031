"""Servers a benchmark owns: a PostgreSQL database and a Redis server made for one run.

A benchmark never writes into a database or Redis db somebody else uses, so it can run
beside the test suite or another benchmark on the same machine; both are removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def own_postgres_database():
    """Yield the URL of a new, empty database on the local PostgreSQL; drop it afterwards."""
    import psycopg

    name = f"crossdock_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        from crossdock import database

        database.dispose_engine()
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def own_redis_server():
    """Yield ``redis://127.0.0.1:PORT`` of a private redis-server that keeps nothing on disk."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="crossdock-bench-redis-")
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", folder],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_open(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
