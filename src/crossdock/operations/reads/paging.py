"""Paging of every listing: ``limit`` and ``offset`` in, ``total_entries`` out (Airflow's names).

A limit above :data:`MAX_LIMIT` is lowered to it, as Airflow lowers one above its
``maximum_page_limit``; a limit below 1 or a negative offset is a bad request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from crossdock.operations.errors import BadRequest

#: Entries a listing returns when the caller names no limit (Airflow's default).
DEFAULT_LIMIT = 100
#: The most entries one page may hold (a 1,000-task run's task list fits in one page).
MAX_LIMIT = 1000


def checked_page(limit: Any, offset: Any) -> tuple[int, int]:
    """``(limit, offset)`` as whole numbers, the limit lowered to :data:`MAX_LIMIT`."""
    try:
        limit, offset = int(limit), int(offset)
    except (TypeError, ValueError):
        raise BadRequest(f"limit and offset must be whole numbers, not {limit!r} and {offset!r}") from None
    if limit < 1:
        raise BadRequest(f"limit must be at least 1, not {limit}")
    if offset < 0:
        raise BadRequest(f"offset must be 0 or more, not {offset}")
    return min(limit, MAX_LIMIT), offset


def count(session: Session, query: Select) -> int:
    """How many rows ``query`` selects before paging (one COUNT over it)."""
    return int(session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)


def paged(session: Session, query: Select, *, limit: int, offset: int,
          scalars: bool = True) -> tuple[list[Any], int]:
    """The page's rows and the total before paging.

    :param scalars: rows of one entity each (a ``select(Model)``); False: rows of columns
        (read by attribute, as a model is).
    """
    limit, offset = checked_page(limit, offset)
    page = query.limit(limit).offset(offset)
    rows = list(session.scalars(page)) if scalars else list(session.execute(page))
    return rows, count(session, query)
