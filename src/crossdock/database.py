"""The metadata database: engine, sessions, migrations.

SQLite is the embedded default. It is opened in WAL mode with a busy timeout so that
CLI readers (``dags list-runs``, ``tasks states-for-dag-run``) never block the one
writer, the scheduler. PostgreSQL is used by giving its URL in
``[database] sql_alchemy_conn``.
"""

from __future__ import annotations

import re

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from crossdock.configuration import ConfigError, conf
from crossdock.exceptions import UserFacingError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class DatabaseError(UserFacingError):
    """The metadata database cannot be reached or is not usable; the message is one line."""


_lock = threading.Lock()
_engine: Engine | None = None
_engine_url: str | None = None
_sessionmaker: sessionmaker | None = None


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    busy_ms = int(conf.getfloat("database", "sqlite_busy_timeout") * 1000)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def build_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout, PostgreSQL a connect timeout."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"[database] sql_alchemy_conn = {url!r} is not a database URL: {exc}") from None
    kwargs: dict = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": conf.getfloat("database", "sqlite_busy_timeout")}
    else:
        kwargs["pool_size"] = conf.getint("database", "sql_alchemy_pool_size")
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": conf.getint("database", "connect_timeout"),
                                      "options": f"-c idle_in_transaction_session_timeout={_stalled_tx_ms()}"}
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"[database] sql_alchemy_conn = {url!r}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _stalled_tx_ms() -> int:
    """How long PostgreSQL lets a session sit idle inside a transaction before ending it.

    The active scheduler renews its lease as the first statement of every transaction it
    writes in, so the lease row stays locked until that transaction ends. A scheduler
    paused (or cut off) in the middle of one would hold the row, and with it every
    standby's takeover, for as long as it stays paused; the server ends such a session
    after a fifth of ``[scheduler] standby_takeover_seconds`` (at least 1 s), well inside
    the takeover window. crossdock's own transactions never wait between statements.
    """
    return int(1000 * max(1.0, 0.2 * conf.getfloat("scheduler", "standby_takeover_seconds")))


def get_engine() -> Engine:
    """The process-wide engine, rebuilt when the configured URL changes."""
    global _engine, _engine_url, _sessionmaker
    url = conf.getstr("database", "sql_alchemy_conn")
    with _lock:
        if _engine is None or _engine_url != url:
            if _engine is not None:
                _engine.dispose()
            _engine = build_engine(url)
            _engine_url = url
            _sessionmaker = sessionmaker(bind=_engine, expire_on_commit=False)
        return _engine


def dispose_engine() -> None:
    """Drop pooled connections, e.g. in a forked child that must not share them."""
    global _engine, _engine_url, _sessionmaker
    with _lock:
        if _engine is not None:
            _engine.dispose(close=False)
        _engine = _engine_url = _sessionmaker = None


@contextmanager
def create_session() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    get_engine()
    assert _sessionmaker is not None
    session = _sessionmaker()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def describe_db_error(exc: BaseException) -> str:
    """One readable line for a database failure (no SQL, no traceback)."""
    original = getattr(exc, "orig", None) or exc
    first = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    return f"cannot use the metadata database {redacted_url()}: {first}"


def redacted_url() -> str:
    try:
        return make_url(conf.getstr("database", "sql_alchemy_conn")).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used to word an error message
        return "(unparseable URL)"


def check_connection() -> None:
    """Fail with :class:`DatabaseError` when the database cannot be reached."""
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise DatabaseError(describe_db_error(exc)) from None


def _alembic_config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def migrate() -> None:
    """Create or upgrade every table to the newest migration, and the default pool."""
    from alembic import command

    try:
        with get_engine().begin() as connection:
            command.upgrade(_alembic_config(connection), "head")
        _ensure_default_pool()
    except OperationalError as exc:
        raise DatabaseError(describe_db_error(exc)) from None


def reset() -> None:
    """Drop every crossdock table, then migrate again: an empty database."""
    from alembic import command

    try:
        with get_engine().begin() as connection:
            command.downgrade(_alembic_config(connection), "base")
    except SQLAlchemyError as exc:
        raise DatabaseError(describe_db_error(exc)) from None
    migrate()


def _ensure_default_pool() -> None:
    from crossdock.models import DEFAULT_POOL_NAME, Pool

    with create_session() as session:
        if session.query(Pool).filter_by(pool=DEFAULT_POOL_NAME).one_or_none() is None:
            session.add(Pool(pool=DEFAULT_POOL_NAME, slots=conf.getint("core", "default_pool_slots"),
                             description="Default pool"))


def is_migrated() -> bool:
    from sqlalchemy import inspect

    try:
        return inspect(get_engine()).has_table("alembic_version")
    except OperationalError as exc:
        raise DatabaseError(describe_db_error(exc)) from None


#: Attempts, and seconds between them, to migrate while another process may be migrating.
MIGRATE_ATTEMPTS = 20
MIGRATE_RETRY_PAUSE = 0.25


_REVISION_LINE = re.compile(r"^(down_revision|revision) = (?:'([^']*)'|\"([^\"]*)\"|None)\s*$", re.M)


def _head_revision() -> str | None:
    """The newest migration, read from the revision lines of the migration files.

    Every CLI call checks it; reading two lines per file instead of importing Alembic
    keeps a ``crossdock dags trigger`` about 120 ms cheaper (a test compares the answer
    with Alembic's own).
    """
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, single, double in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            value = single or double
            if value:
                (revisions if name == "revision" else parents).add(value)
    heads = revisions - parents
    if len(heads) == 1:
        return heads.pop()
    from alembic.config import Config  # a layout these lines cannot read: ask Alembic
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision() -> str | None:
    """The migration the database is at (None before the first)."""
    try:
        with get_engine().connect() as connection:
            if not is_migrated():
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        raise DatabaseError(describe_db_error(exc)) from None


def ensure_migrated() -> None:
    """Migrate when the tables are missing or older than this version (embedded-default comfort).

    A scheduler and a CLI call started together on a fresh home both find no tables and
    both migrate; the loser's CREATE TABLE fails while the winner's transaction is still
    open. The loser waits for the winner's revision to appear instead of failing.
    """
    import time

    head = _head_revision()
    for attempt in range(1, MIGRATE_ATTEMPTS + 1):
        if current_revision() == head:
            return
        try:
            migrate()
            return
        except (DatabaseError, SQLAlchemyError):
            if attempt == MIGRATE_ATTEMPTS:
                raise
            time.sleep(MIGRATE_RETRY_PAUSE)
