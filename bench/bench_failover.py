"""Scheduler failover: time from the active scheduler's death to a standby being active.

Runs two ``crossdock scheduler`` processes on one metadata database (a fresh SQLite file
and, when reachable, a PostgreSQL database of the run's own), kills the active one with
SIGKILL several times (restarting it each time, as a supervisor would), and prints how long
each takeover took by the lease's record in the database, polled every 20 ms. The
baseline, in the same run, is a clean stop (SIGTERM), where the lease is handed over at once.

    python bench/bench_failover.py [--kills 3] [--takeover-seconds 10] [--no-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_services import own_postgres_database, port_open  # noqa: E402

POLL_SECONDS = 0.02


def lease_holder(engine) -> tuple[int | None, int | None]:
    from sqlalchemy import text

    with engine.connect() as connection:
        row = connection.execute(text("SELECT holder_job_id, token FROM scheduler_lease")).first()
    return (row[0], row[1]) if row else (None, None)


def job_pid(engine, job_id: int) -> int:
    from sqlalchemy import text

    with engine.connect() as connection:
        return connection.execute(text("SELECT pid FROM job WHERE id = :id"), {"id": job_id}).scalar_one()


def wait_for_holder(engine, *, other_than: int | None, limit: float = 120.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        holder, _token = lease_holder_or_none(engine)
        if holder is not None and holder != other_than:
            return holder
        time.sleep(POLL_SECONDS)
    raise RuntimeError("no scheduler took the lease")


def lease_holder_or_none(engine):
    try:
        return lease_holder(engine)
    except Exception:  # noqa: BLE001 - the table appears with the first migration
        return None, None


def bench(db_url: str, *, kills: int, takeover_seconds: float) -> dict:
    from sqlalchemy import create_engine

    home = tempfile.mkdtemp(prefix="crossdock-bench-failover-")
    os.makedirs(os.path.join(home, "dags"))
    env = {name: value for name, value in os.environ.items() if not name.startswith("CROSSDOCK__")}
    env.update({"CROSSDOCK_HOME": home, "CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN": db_url,
                "CROSSDOCK__SCHEDULER__STANDBY_TAKEOVER_SECONDS": str(takeover_seconds),
                "CROSSDOCK__LOGGING__LOGGING_LEVEL": "WARNING"})
    subprocess.run([sys.executable, "-m", "crossdock.cli.main", "db", "migrate"], env=env, check=True,
                   capture_output=True)
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    processes = []

    def start():
        processes.append(subprocess.Popen([sys.executable, "-m", "crossdock.cli.main", "scheduler"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    try:
        start()
        start()
        holder = wait_for_holder(engine, other_than=None)
        time.sleep(takeover_seconds)  # both up: the second is a standby by now
        takeovers = []
        for _ in range(kills):
            pid = job_pid(engine, holder)
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            holder = wait_for_holder(engine, other_than=holder)
            takeovers.append(time.monotonic() - killed)
            start()
            time.sleep(2)
        pid = job_pid(engine, holder)
        stopped = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        wait_for_holder(engine, other_than=holder)
        clean = time.monotonic() - stopped
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        engine.dispose()
    return {"takeovers": takeovers, "clean": clean}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--takeover-seconds", type=float, default=10.0)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    backends = ["sqlite"] + ([] if args.no_postgres or not port_open(5432) else ["postgresql"])
    print(f"[scheduler] standby_takeover_seconds = {args.takeover_seconds:g}; lease timeout "
          f"{args.takeover_seconds * 0.6:g} s")
    for backend in backends:
        with contextlib.ExitStack() as stack:
            if backend == "postgresql":
                url = stack.enter_context(own_postgres_database())
            else:
                url = f"sqlite:///{tempfile.mkdtemp(prefix='crossdock-bench-')}/crossdock.db"
            result = bench(url, kills=args.kills, takeover_seconds=args.takeover_seconds)
        takeovers = result["takeovers"]
        print(f"[{backend}] SIGKILL → standby holds the lease: "
              f"{', '.join(f'{t:.2f}' for t in takeovers)} s (median {statistics.median(takeovers):.2f}, "
              f"max {max(takeovers):.2f}); baseline, clean SIGTERM hand-over: {result['clean']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
