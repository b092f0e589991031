"""The stored parse of DAGs, read once per version and kept while its hash is unchanged.

A listing page of 100 DAGs, a grid or a task list needs each DAG's serialized form
(its description, task types, groups, edges); decoding a big DAG's JSON on every
request would cost more than the request's queries. The hash column says cheaply
whether the stored form changed since it was last decoded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from crossdock.dag.serialization import SerializedDAG
from crossdock.models import SerializedDagModel

#: Decoded DAGs kept (least recently used dropped first).
CACHE_SIZE = 512

_cache: "OrderedDict[tuple[str, str], SerializedDAG]" = OrderedDict()
_lock = threading.Lock()


def parsed_dags(session: Session, dag_ids: Iterable[str]) -> dict[str, SerializedDAG]:
    """dag_id → its stored parse, for the ids that have one."""
    ids = list(dict.fromkeys(dag_ids))
    if not ids:
        return {}
    hashes = dict(session.execute(select(SerializedDagModel.dag_id, SerializedDagModel.dag_hash)
                                  .where(SerializedDagModel.dag_id.in_(ids))).all())
    found: dict[str, SerializedDAG] = {}
    with _lock:
        for dag_id, digest in hashes.items():
            dag = _cache.get((dag_id, digest))
            if dag is not None:
                _cache.move_to_end((dag_id, digest))
                found[dag_id] = dag
    missing = [dag_id for dag_id in hashes if dag_id not in found]
    if missing:
        rows = session.execute(select(SerializedDagModel.dag_id, SerializedDagModel.dag_hash, SerializedDagModel.data)
                               .where(SerializedDagModel.dag_id.in_(missing))).all()
        with _lock:
            for dag_id, digest, data in rows:
                dag = SerializedDAG.from_dict(data)
                found[dag_id] = dag
                _cache[(dag_id, digest)] = dag
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return found


def parsed_dag(session: Session, dag_id: str) -> SerializedDAG | None:
    return parsed_dags(session, [dag_id]).get(dag_id)
