"""A trigger reads a DAG's params from its stored row on SQLite and the real PostgreSQL alike.

Only the ``params`` key of the serialized DAG is read (a JSON path query, which each
database spells its own way), so the same trigger must see the same params on both.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crossdock.dag.param import ParamValidationError
from crossdock.database import create_session
from crossdock.models import DagModel, DagRun, SerializedDagModel
from crossdock.models.base import utcnow
from crossdock.scheduler.dag_runs import trigger_dag_run

PARAMS = {"n": {"default": 10, "schema": {"type": "integer", "maximum": 20}}, "who": {"default": "world"}}


def _store(dag_id: str, params: dict | None) -> None:
    data = {"dag_id": dag_id, "fileloc": f"/nowhere/{dag_id}.py", "tasks": {}}
    if params is not None:
        data["params"] = params
    with create_session() as session:
        session.add(DagModel(dag_id=dag_id, is_paused=False, is_active=True, fileloc=data["fileloc"]))
        session.add(SerializedDagModel(dag_id=dag_id, fileloc=data["fileloc"], data=data, dag_hash="x",
                                       last_updated=utcnow()))


def _runs(dag_id: str) -> list[tuple[str, dict]]:
    with create_session() as session:
        return [(run.run_id, run.conf) for run in session.scalars(select(DagRun).where(DagRun.dag_id == dag_id))]


def test_params_are_read_from_the_stored_dag_on_each_database(backend):
    _store("with_params", PARAMS)
    _store("without_params", None)
    with pytest.raises(ParamValidationError, match="param 'n': 25 is greater than the maximum of 20"):
        trigger_dag_run("with_params", run_id="bad", conf={"n": 25})
    assert _runs("with_params") == []
    assert trigger_dag_run("with_params", run_id="good", conf={"n": 7}) == "good"
    assert trigger_dag_run("without_params", run_id="any", conf={"n": 25}) == "any"
    assert _runs("with_params") == [("good", {"n": 7})] and _runs("without_params") == [("any", {"n": 25})]
