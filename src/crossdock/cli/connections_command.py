"""``crossdock connections get|add|list|delete``, as ``airflow connections``.

Reads go through the whole chain (``CROSSDOCK_CONN_<ID>``, then the connections file);
writes go to ``[secrets] connections_file``. Passwords and secret ``extra`` values print
as ``***`` unless ``--show-secrets`` is given; listings never show them. No database is
opened.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from crossdock.cli.errors import CliError
from crossdock.cli.output import print_rows

log = logging.getLogger("crossdock.secrets")

GET_FIELDS = ["conn_id", "conn_type", "description", "host", "port", "schema", "login", "password", "extra",
              "uri", "source"]
LIST_COLUMNS = ["conn_id", "conn_type", "host", "port", "schema", "login", "source"]


def _shown(conn, *, show_secrets: bool):
    """``conn`` as a person may see it: password and secret extra values as ``***``."""
    from crossdock.secrets.connection import Connection
    from crossdock.secrets.masking import MASK, is_sensitive_name

    if show_secrets:
        return conn
    extra = {key: MASK if is_sensitive_name(key) else value for key, value in conn.extra_dejson.items()}
    return Connection(conn.conn_id, conn_type=conn.conn_type, description=conn.description, host=conn.host,
                      login=conn.login, password=MASK if conn.password else None, schema=conn.schema,
                      port=conn.port, extra=extra or None)


def _row(conn, source: str, *, show_secrets: bool) -> dict[str, Any]:
    from urllib.parse import quote

    from crossdock.secrets.masking import MASK

    shown = _shown(conn, show_secrets=show_secrets)
    uri = shown.get_uri() if shown.conn_type else None
    if uri and not show_secrets:
        uri = uri.replace(quote(MASK, safe=""), MASK)
    return {"conn_id": conn.conn_id, "conn_type": shown.conn_type, "description": shown.description,
            "host": shown.host, "port": shown.port, "schema": shown.schema, "login": shown.login,
            "password": shown.password, "extra": shown.extra_dejson or None, "uri": uri, "source": source}


def get(args) -> int:
    from crossdock.secrets.backends import connection_places, find_connection
    from crossdock.secrets.errors import ConnectionNotFound

    found = find_connection(args.conn_id)
    if found is None:
        raise ConnectionNotFound(f"connection {args.conn_id!r} is not defined: looked in "
                                 f"{connection_places(args.conn_id)}")
    conn, backend = found
    row = _row(conn, backend.name, show_secrets=args.show_secrets)
    if args.output == "json":
        print(json.dumps(row, indent=2, ensure_ascii=False))
    else:
        shown = [{"field": name, "value": json.dumps(row[name]) if name == "extra" and row[name] else row[name]}
                 for name in GET_FIELDS]
        print_rows(shown, columns=["field", "value"])
    return 0


def _connection_of(args):
    from crossdock.secrets.connection import Connection

    fields = {"conn_type": args.conn_type, "host": args.conn_host, "login": args.conn_login,
              "password": args.conn_password, "port": args.conn_port, "schema": args.conn_schema,
              "extra": args.conn_extra}
    forms = [name for name, given in (("--conn-uri", args.conn_uri is not None),
                                      ("--conn-json", args.conn_json is not None),
                                      ("the --conn-* fields", any(v is not None for v in fields.values())))
             if given]
    if len(forms) > 1:
        raise CliError(f"give one of --conn-uri, --conn-json or the --conn-* fields, not {' and '.join(forms)}")
    if args.conn_uri is not None:
        return Connection(args.conn_id, description=args.conn_description, uri=args.conn_uri)
    if args.conn_json is not None:
        conn = Connection.from_json(args.conn_json, conn_id=args.conn_id)
        if args.conn_description is not None:
            conn.description = args.conn_description
        return conn
    if not args.conn_type:
        raise CliError("give --conn-uri, --conn-json or --conn-type (with any of --conn-host, --conn-login, "
                       "--conn-password, --conn-port, --conn-schema, --conn-extra)")
    return Connection(args.conn_id, description=args.conn_description, **fields)


def add(args) -> int:
    from crossdock.secrets.backends import file_backend
    from crossdock.secrets.environment import connection_env_name

    if not args.conn_id.strip():
        raise CliError("a connection id is a non-empty string")
    conn = _connection_of(args)
    backend = file_backend()
    backend.add_connection(conn)
    env_name = connection_env_name(args.conn_id)
    if env_name in os.environ:
        log.warning("connection %r is also set by environment variable %s, which takes precedence", args.conn_id,
                    env_name)
    print(f"Connection {args.conn_id!r} added to {backend.describe_connection()}")
    return 0


def list_connections(args) -> int:
    from crossdock.secrets.backends import file_backend, listing
    from crossdock.secrets.environment import EnvironmentBackend

    rows = [_row(conn, source, show_secrets=False)
            for _, conn, source in listing(EnvironmentBackend().connections(), file_backend().connections())]
    print_rows(rows, columns=LIST_COLUMNS, output=args.output)
    return 0


def delete(args) -> int:
    from crossdock.secrets.backends import file_backend
    from crossdock.secrets.environment import connection_env_name

    backend = file_backend()
    env_name = connection_env_name(args.conn_id)
    deleted = backend.delete_connection(args.conn_id)
    if not deleted:
        if env_name in os.environ:
            raise CliError(f"connection {args.conn_id!r} is set by environment variable {env_name}, which "
                           f"crossdock does not change; unset it where it is set")
        raise CliError(f"connection {args.conn_id!r} does not exist in {backend.describe_connection()}")
    if env_name in os.environ:
        log.warning("connection %r is still set by environment variable %s", args.conn_id, env_name)
    print(f"Connection {args.conn_id!r} deleted from {backend.describe_connection()}")
    return 0
