"""The metadata tables on SQLite and on the real PostgreSQL, through the migrations."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from crossdock import database
from crossdock.configuration import conf
from crossdock.database import DatabaseError, create_session
from crossdock.models import Base, DagRun, Job, Pool, TaskInstance

TABLES = {"dag", "serialized_dag", "dag_run", "task_instance", "job", "slot_pool", "import_error"}


def test_migrations_create_every_table_and_match_the_models(backend):
    names = set(inspect(database.get_engine()).get_table_names())
    assert TABLES <= names
    for table in Base.metadata.sorted_tables:
        columns = {c["name"] for c in inspect(database.get_engine()).get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name


def test_default_pool_exists_after_migrate(backend):
    with create_session() as session:
        pool = session.scalars(select(Pool).where(Pool.pool == "default_pool")).one()
    assert pool.slots == conf.getint("core", "default_pool_slots")


def test_task_instance_round_trip_keeps_utc_and_json(backend):
    now = datetime(2026, 5, 1, 12, 30, tzinfo=timezone.utc)
    with create_session() as session:
        session.add(DagRun(dag_id="d", run_id="r", run_type="manual", logical_date=now, state="queued"))
        session.add(TaskInstance(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1,
                                 state="queued", queue="q", pool="default_pool", priority_weight=3,
                                 executor="LocalExecutor", external_executor_id="abc",
                                 executor_config={"pod_override": {"spec": {"containers": [{"name": "base"}]}}},
                                 queued_dttm=now))
    with create_session() as session:
        ti = session.scalars(select(TaskInstance)).one()
        assert ti.queued_dttm == now and ti.queued_dttm.tzinfo is not None
        assert ti.executor_config["pod_override"]["spec"]["containers"][0]["name"] == "base"
        assert ti.key == ("d", "t", "r", 1, -1)


def test_task_instance_identity_is_unique(backend):
    with pytest.raises(IntegrityError):
        with create_session() as session:
            for _ in range(2):
                session.add(TaskInstance(dag_id="d", task_id="t", run_id="r", map_index=-1))
                session.flush()


def test_naive_datetime_is_refused(backend):
    with pytest.raises(Exception, match="naive datetime"):
        with create_session() as session:
            session.add(Job(job_type="x", state="running", start_date=datetime(2026, 1, 1),
                            latest_heartbeat=datetime(2026, 1, 1)))


def test_reset_empties_the_database(backend):
    with create_session() as session:
        session.add(Pool(pool="extra", slots=1))
    database.reset()
    with create_session() as session:
        assert session.scalars(select(Pool.pool)).all() == ["default_pool"]


def test_sqlite_runs_in_wal_mode(crossdock_home):
    database.migrate()
    with database.get_engine().connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_unreachable_database_gives_one_readable_line(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("CROSSDOCK__DATABASE__CONNECT_TIMEOUT", "2")
    conf.reload()
    with pytest.raises(DatabaseError) as error:
        database.check_connection()
    message = str(error.value)
    assert "127.0.0.1:1" in message and "\n" not in message


def _first_use(home: str) -> str:
    import os

    os.environ["CROSSDOCK_HOME"] = home
    from crossdock import database as db

    db.ensure_migrated()
    return db.current_revision()


def test_processes_starting_together_on_a_fresh_home_all_migrate(tmp_path):
    """A scheduler and CLI calls started at once on a new home: none fails on 'table exists'."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for round_number in range(3):
        home = tmp_path / f"home{round_number}"
        home.mkdir()
        with context.Pool(4) as pool:
            revisions = pool.map(_first_use, [str(home)] * 4)
        assert len(set(revisions)) == 1 and revisions[0] is not None


def test_the_head_revision_read_from_the_migration_files_is_alembics():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from crossdock import database

    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS_DIR))
    assert database._head_revision() == ScriptDirectory.from_config(config).get_current_head()
