"""Parsing the DAG folder into the database on behalf of an action (a listing, a trigger).

The scheduler parses on its own schedule; an action that names a DAG not seen yet
parses once itself so the DAG can be used at once, one parse at a time per home.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from crossdock.database import create_session, ensure_migrated
from crossdock.models import DagModel
from crossdock.operations.errors import NotFound


def parse_dags_folder_into_db() -> dict[str, str]:
    """Parse the DAG folder in child processes and store the result; returns import errors."""
    from crossdock.configuration import conf
    from crossdock.dag.dag_store import store_parse_result
    from crossdock.dag.processor import parse_dag_folder

    ensure_migrated()
    result = parse_dag_folder(conf.getstr("core", "dags_folder"))
    store_parse_result(result)
    return result.import_errors


def parse_unless_known(dag_id: str) -> None:
    """Parse the DAG folder so a DAG not seen yet can be used; one parse at a time per home.

    Many triggers of a new DAG at once would each parse the whole folder: on a small
    machine some parses then overrun ``[core] dagbag_import_timeout`` (the DAG looks
    missing, and a bogus import error is stored) and their concurrent writes can
    deadlock. Behind a lock in ``CROSSDOCK_HOME`` the first caller parses and the others
    find the DAG known when their turn comes. A DAG still unknown after the parse, in a
    folder with import errors, is reported with those errors.
    """
    import fcntl

    from crossdock.configuration import crossdock_home

    with create_session() as session:
        if session.get(DagModel, dag_id) is not None:
            return
    home = crossdock_home()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "dags-parse.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with create_session() as session:
            if session.get(DagModel, dag_id) is not None:
                return
        try:
            errors = parse_dags_folder_into_db()
        except SQLAlchemyError:
            # A scheduler may be storing the same parse; what matters is that the DAG is known now.
            with create_session() as session:
                if session.get(DagModel, dag_id) is not None:
                    return
            raise
    with create_session() as session:
        known = session.get(DagModel, dag_id)
    if known is None and errors:
        failed = "; ".join(f"{path}: {(error.strip().splitlines() or ['failed'])[0]}"
                           for path, error in sorted(errors.items()))
        raise NotFound(f"DAG {dag_id!r} not found; the DAG folder has import errors: {failed}")
