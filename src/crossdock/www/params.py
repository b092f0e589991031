"""Query parameters many routes share, declared once so the OpenAPI document states their bounds."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Optional

from fastapi import Query

from crossdock.operations.reads.paging import DEFAULT_LIMIT
from crossdock.www.errors import ApiError

#: The largest whole number a path or query takes (the database's 32-bit integers).
MAX_INT = 2 ** 31 - 1

Limit = Annotated[int, Query(ge=1, le=MAX_INT, description="most entries to return (at most 1000)")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="entries to skip")]
MapIndex = Annotated[int, Query(ge=-1, le=MAX_INT, description="the mapped instance; -1 for an unmapped task")]
States = Annotated[Optional[list[str]], Query(description="only these states (repeat the parameter)")]
DEFAULT_PAGE = {"limit": DEFAULT_LIMIT, "offset": 0}


def iso_datetime(value: str | None, *, what: str) -> datetime | None:
    """ISO 8601 text as an aware UTC datetime (naive means UTC); 400 for anything else."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise ApiError(400, f"{what} {value!r} is not an ISO 8601 date and time") from None
