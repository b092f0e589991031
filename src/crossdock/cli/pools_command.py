"""``crossdock pools ...``: list, get, set, delete, import and export pools (Airflow's commands).

The work is :mod:`crossdock.operations.pools`'; ``import`` and ``export`` read and write
Airflow's JSON shape, ``{"name": {"slots": N, "description": "…"}}``.
"""

from __future__ import annotations

import json
from pathlib import Path

from crossdock.cli.errors import CliError
from crossdock.cli.output import print_rows
from crossdock.operations import pools

COLUMNS = ["name", "slots", "running_slots", "queued_slots", "open_slots", "description"]


def list_pools(args) -> int:
    print_rows(pools.list_pools(), columns=COLUMNS, output=args.output)
    return 0


def get(args) -> int:
    print_rows([pools.get_pool(args.name)], columns=COLUMNS, output=args.output)
    return 0


def set_pool(args) -> int:
    pool = pools.set_pool(args.name, slots=args.slots, description=args.description)
    print_rows([pool], columns=COLUMNS, output=args.output)
    return 0


def delete(args) -> int:
    pools.delete_pool(args.name)
    print(f"deleted pool {args.name!r}")
    return 0


def import_pools(args) -> int:
    imported = pools.import_pools(args.file)
    print_rows(imported, columns=COLUMNS, output=args.output)
    return 0


def export_pools(args) -> int:
    data = pools.export_pools()
    try:
        Path(args.file).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {args.file!r}: {exc.strerror or exc}") from None
    print(f"exported {len(data)} pool(s) to {args.file}")
    return 0
