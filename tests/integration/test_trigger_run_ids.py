"""A trigger either stores its run or says why not: same-microsecond triggers, races, locks.

On SQLite and the real PostgreSQL. The clock is frozen to make two triggers land in
the same microsecond for certain (what many concurrent clients, or a coarse clock, do
by chance); everything else is real: sessions, transactions, unique keys, the CLI.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from crossdock.database import create_session
from crossdock.models import DagModel, DagRun

FROZEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


@pytest.fixture
def known_dag(backend):
    with create_session() as session:
        session.add(DagModel(dag_id="ids", is_paused=False, is_active=True, fileloc="/nowhere/ids.py"))
    return "ids"


@pytest.fixture
def frozen_clock(monkeypatch):
    import crossdock.scheduler.dag_runs as dag_runs

    monkeypatch.setattr(dag_runs, "utcnow", lambda: FROZEN)


def _stored_run_ids(dag_id: str) -> list[str]:
    with create_session() as session:
        return sorted(session.scalars(select(DagRun.run_id).where(DagRun.dag_id == dag_id)))


def test_two_triggers_in_the_same_microsecond_both_get_a_run(known_dag, frozen_clock):
    from crossdock.scheduler.dag_runs import trigger_dag_run

    first = trigger_dag_run(known_dag)
    second = trigger_dag_run(known_dag)
    assert first == f"manual__{FROZEN.isoformat()}"
    assert second != first and second.startswith("manual__2026-01-02T03:04:05.678902")
    assert _stored_run_ids(known_dag) == sorted([first, second])


def test_concurrent_triggers_in_the_same_microsecond_all_get_a_run(known_dag, frozen_clock):
    """Each sees no run with its id, then all insert it: the unique key decides, losers retry."""
    from crossdock.scheduler.dag_runs import trigger_dag_run

    count = 8
    start = threading.Barrier(count)
    created, errors = [], []

    def trigger() -> None:
        start.wait()
        try:
            created.append(trigger_dag_run(known_dag))
        except Exception as exc:  # noqa: BLE001 - collected and shown by the assertion
            errors.append(repr(exc))

    threads = [threading.Thread(target=trigger) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(set(created)) == count
    assert _stored_run_ids(known_dag) == sorted(created)


def test_a_chosen_run_id_or_logical_date_that_is_taken_is_refused_not_moved(known_dag):
    from crossdock.scheduler.dag_runs import DagRunExistsError, trigger_dag_run

    assert trigger_dag_run(known_dag, run_id="mine") == "mine"
    with pytest.raises(DagRunExistsError, match="mine"):
        trigger_dag_run(known_dag, run_id="mine")
    trigger_dag_run(known_dag, logical_date=FROZEN)
    with pytest.raises(DagRunExistsError):
        trigger_dag_run(known_dag, logical_date=FROZEN)
    assert len(_stored_run_ids(known_dag)) == 2


def test_cli_trigger_on_a_database_kept_locked_fails_with_the_reason(dags_folder, crossdock_home):
    """SQLite held by another writer past the busy timeout: exit 1 and one line, not a traceback or a 0."""
    from crossdock import database

    (dags_folder / "locked.py").write_text(textwrap.dedent("""
        from crossdock import DAG, BashOperator

        with DAG("locked", schedule=None) as dag:
            BashOperator(task_id="noop", bash_command="true")
    """), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k.startswith("CROSSDOCK__") or not k.startswith("CROSSDOCK")}
    env.update(CROSSDOCK_HOME=str(crossdock_home), CROSSDOCK__DATABASE__SQLITE_BUSY_TIMEOUT="0.1")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "crossdock", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    assert cli("dags", "reserialize").returncode == 0
    path = database.get_engine().url.database
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long write transaction holds it
        result = cli("dags", "trigger", "locked")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("crossdock: error: no run was created") and "locked" in result.stderr
    assert "queued run" not in result.stdout
    assert _stored_run_ids("locked") == []
    # once the lock is gone the same call works
    assert cli("dags", "trigger", "locked").returncode == 0
    assert len(_stored_run_ids("locked")) == 1


def test_triggering_a_dag_whose_file_fails_to_import_names_the_import_error(dags_folder, crossdock_home):
    (dags_folder / "broken.py").write_text("from crossdock import DAG\nraise RuntimeError('the file is broken')\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k.startswith("CROSSDOCK__") or not k.startswith("CROSSDOCK")}
    env["CROSSDOCK_HOME"] = str(crossdock_home)
    result = subprocess.run([sys.executable, "-m", "crossdock", "dags", "trigger", "broken"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "DAG 'broken' not found; the DAG folder has import errors" in result.stderr
    assert "broken.py: RuntimeError: the file is broken" in result.stderr
