"""Printing listings as an aligned table (for people) or JSON (for scripts)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, Sequence

OUTPUT_FORMATS = ("table", "json")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_rows(rows: Sequence[dict[str, Any]], *, columns: Sequence[str], output: str = "table",
               stream=None) -> None:
    """Print ``rows`` with ``columns`` in the chosen format; an empty table says so."""
    stream = stream or sys.stdout
    if output == "json":
        json.dump([{c: _jsonable(row.get(c)) for c in columns} for row in rows], stream, indent=2)
        stream.write("\n")
        return
    if not rows:
        stream.write("(no rows)\n")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    stream.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    stream.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        stream.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


def add_output_argument(parser) -> None:
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table",
                        help="output format (default: table)")
