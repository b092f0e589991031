"""Writing parse results to the metadata database: DAG rows, serialized DAGs, import errors.

The DAG-file processor produces JSON; this module is the only place that turns it
into rows. A serialized DAG is rewritten only when its hash changed, so the scheduler
can tell cheaply which DAGs it must reload. A file that failed to import keeps the
DAGs it defined before (they stay active with their last good version): one broken
save of a file must not make running DAGs disappear.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from crossdock.configuration import conf
from crossdock.dag.serialization import SerializedDAG, dag_hash
from crossdock.models import DagImportError, DagModel, SerializedDagModel
from crossdock.models.base import utcnow

if TYPE_CHECKING:
    from crossdock.dag.processor import ParseResult


def _upsert_dag(session: Session, data: dict[str, Any], existing: DagModel | None, now: datetime) -> None:
    dag = SerializedDAG.from_dict(data)
    row = existing or DagModel(dag_id=dag.dag_id, is_paused=conf.getboolean("core", "dags_are_paused_at_creation"))
    row.fileloc = dag.fileloc
    row.schedule = dag.schedule
    row.catchup = dag.catchup
    row.start_date = dag.start_date
    row.max_active_runs = dag.max_active_runs
    row.max_active_tasks = dag.max_active_tasks
    row.tags = list(dag.tags)
    row.last_parsed = now
    row.is_active = True
    if existing is None:
        session.add(row)


def _replace_import_errors(session: Session, result: "ParseResult", now: datetime) -> None:
    if result.complete:
        session.execute(delete(DagImportError).where(DagImportError.filename.not_in(list(result.import_errors))))
    elif result.files:
        session.execute(delete(DagImportError).where(DagImportError.filename.in_(result.files)))
    existing = {row.filename: row for row in session.scalars(
        select(DagImportError).where(DagImportError.filename.in_(list(result.import_errors))))}
    for filename, message in result.import_errors.items():
        row = existing.get(filename)
        if row is None:
            session.add(DagImportError(filename=filename, stacktrace=message, timestamp=now))
        elif row.stacktrace != message:
            row.stacktrace = message
            row.timestamp = now


def _deactivate(session: Session, result: "ParseResult", seen: set[str]) -> None:
    """Mark DAGs that no longer exist inactive; DAGs of files that failed are left alone."""
    failed = set(result.import_errors)
    query = select(DagModel.dag_id, DagModel.fileloc).where(DagModel.is_active.is_(True))
    if not result.complete:
        query = query.where(DagModel.fileloc.in_(result.files))
    gone = [dag_id for dag_id, fileloc in session.execute(query)
            if dag_id not in seen and (fileloc not in failed or not os.path.exists(fileloc))]
    if gone:
        session.execute(update(DagModel).where(DagModel.dag_id.in_(gone)).values(is_active=False))


def sync_parse_result_to_db(result: "ParseResult", session: Session) -> list[str]:
    """Store ``result`` and return the ids of DAGs whose serialized form is new or changed.

    Upserts one ``dag`` row per DAG (``is_paused`` and ``next_dagrun`` are never touched),
    writes ``serialized_dag`` only when the hash differs, replaces the import errors of
    the parsed files (all files when ``result.complete``), and marks DAGs whose file
    vanished or no longer defines them inactive. The caller commits the session.
    """
    now = utcnow()
    by_id = {data["dag_id"]: data for data in result.dags}
    ids = list(by_id)
    dag_rows = {row.dag_id: row for row in session.scalars(select(DagModel).where(DagModel.dag_id.in_(ids)))}
    serialized_rows = {row.dag_id: row for row in session.scalars(
        select(SerializedDagModel).where(SerializedDagModel.dag_id.in_(ids)))}

    changed: list[str] = []
    for dag_id, data in by_id.items():
        _upsert_dag(session, data, dag_rows.get(dag_id), now)
        digest = dag_hash(data)
        row = serialized_rows.get(dag_id)
        if row is not None and row.dag_hash == digest:
            continue
        changed.append(dag_id)
        if row is None:
            session.add(SerializedDagModel(dag_id=dag_id, fileloc=data["fileloc"], data=data,
                                           dag_hash=digest, last_updated=now))
        else:
            row.fileloc = data["fileloc"]
            row.data = data
            row.dag_hash = digest
            row.last_updated = now

    _replace_import_errors(session, result, now)
    session.flush()
    _deactivate(session, result, set(ids))
    session.flush()
    return sorted(changed)


def load_serialized_dags(session: Session, dag_ids: Iterable[str] | None = None) -> dict[str, SerializedDAG]:
    """Serialized DAGs by id (all of them, or just ``dag_ids``), ready for the scheduler."""
    query = select(SerializedDagModel)
    if dag_ids is not None:
        query = query.where(SerializedDagModel.dag_id.in_(list(dag_ids)))
    return {row.dag_id: SerializedDAG.from_dict(row.data) for row in session.scalars(query)}


#: Times a parse result is written again after colliding with another writer.
STORE_ATTEMPTS = 3


def store_parse_result(result: "ParseResult") -> list[str]:
    """Write a parse result in its own transaction, tolerating a concurrent writer.

    The scheduler and a CLI command (``dags trigger`` of a DAG not yet known) may parse
    the same folder at the same moment; the loser of the race for a new DAG's row gets an
    IntegrityError, and writing again turns its inserts into updates.
    """
    from sqlalchemy.exc import IntegrityError

    from crossdock.database import create_session

    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            with create_session() as session:
                return sync_parse_result_to_db(result, session)
        except IntegrityError:
            if attempt == STORE_ATTEMPTS:
                raise
    return []
