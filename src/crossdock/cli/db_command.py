"""``crossdock db migrate|reset|check``."""

from __future__ import annotations

import sys

from crossdock import database
from crossdock.cli.errors import CliError


def migrate(_args) -> int:
    database.migrate()
    print(f"database migrated: {database.redacted_url()}")
    return 0


def reset(args) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("db reset deletes all history; pass --yes to confirm")
        answer = input(f"Drop every table in {database.redacted_url()}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("cancelled")
            return 1
    database.reset()
    print(f"database reset: {database.redacted_url()}")
    return 0


def check(_args) -> int:
    database.check_connection()
    print(f"database reachable: {database.redacted_url()}")
    return 0
