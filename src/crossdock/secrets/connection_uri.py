"""Airflow's connection URI, read and written: ``conn_type://[login[:password]@]host[:port][/schema][?extra]``.

The meanings are Airflow's, so a URI written for ``AIRFLOW_CONN_<ID>`` works as
``CROSSDOCK_CONN_<ID>``:

* login, password, host and schema are percent-encoded (``pa%40ss`` is ``pa@ss``);
* the type is normalised as Airflow does: ``postgresql`` is ``postgres``, ``-`` is ``_``
  (``google-cloud-platform://`` is type ``google_cloud_platform``);
* the query is the ``extra``: ``?sslmode=require`` is ``{"sslmode": "require"}``, and
  ``?__extra__=<JSON>`` carries an extra that is not flat strings;
* a host with a protocol of its own is written after a second ``://``
  (``http://https://example.com`` has host ``https://example.com``).

The parser is written for errors a person can act on: each names what is wrong and how
to fix it (usually: percent-encode a character of the password) without ever quoting the
URI, which holds the password.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from crossdock.secrets.errors import InvalidConnection

#: The query key that carries a whole extra as JSON.
EXTRA_KEY = "__extra__"
URI_FORM = "conn_type://[login[:password]@]host[:port][/schema][?key=value&...]"
ENCODING_HINT = "percent-encode '/', '?', '#', '@' and ':' in a login or password ('@' is %40)"

_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-_]*")
_PORT = re.compile(r"[0-9]{1,5}")
MAX_PORT = 65535


def normalize_conn_type(conn_type: str) -> str:
    """Airflow's spelling of a connection type: ``postgresql`` → ``postgres``, ``-`` → ``_``."""
    if conn_type == "postgresql":
        return "postgres"
    return conn_type.replace("-", "_")


def parse_connection_uri(uri: Any, *, conn_id: str | None) -> dict[str, Any]:
    """The fields of ``uri``: conn_type, host, login, password, port, schema, extra (JSON text).

    Empty parts are None. Raises :class:`InvalidConnection` naming ``conn_id`` and the fault.
    """
    def bad(problem: str) -> InvalidConnection:
        return InvalidConnection(conn_id, problem)

    if not isinstance(uri, str):
        raise bad(f"a connection URI is a string, not {type(uri).__name__}")
    conn_type, sep, rest = uri.strip().partition("://")
    if not sep:
        raise bad(f"it is not a connection URI (expected {URI_FORM})")
    if not _TYPE.fullmatch(conn_type):
        raise bad("the connection type before '://' must start with a letter and hold only letters, "
                  "digits, '+', '-', '.' and '_'")
    protocol = None
    if "://" in rest:
        protocol, _, rest = rest.partition("://")
        if "://" in rest:
            raise bad(f"it holds more than two '://' ({ENCODING_HINT})")
        if not _TYPE.fullmatch(protocol):
            raise bad(f"the host's protocol after the first '://' is not a protocol name ({ENCODING_HINT})")
    rest, hash_sign, _ = rest.partition("#")
    if hash_sign:
        raise bad(f"it holds a '#' ({ENCODING_HINT}; '#' is %23)")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    login = password = None
    if at:
        login_text, colon, password_text = userinfo.partition(":")
        login = unquote(login_text) or None
        password = (unquote(password_text) or None) if colon else None
    host_text, port = _host_and_port(hostport, bad)
    host = unquote(host_text) or None
    if protocol:
        host = f"{protocol}://{host or ''}"
    return {"conn_type": normalize_conn_type(conn_type), "host": host, "login": login,
            "password": password, "port": port, "schema": unquote(path) or None,
            "extra": _extra_of_query(query)}


def _host_and_port(hostport: str, bad) -> tuple[str, int | None]:
    if hostport.startswith("["):  # an IPv6 address: [::1]:5432
        end = hostport.find("]")
        if end < 0:
            raise bad("an IPv6 host opened with '[' is not closed with ']'")
        host, after = hostport[1:end], hostport[end + 1:]
        if after and not after.startswith(":"):
            raise bad(f"text follows the IPv6 host's ']' where ':port' belongs ({ENCODING_HINT})")
        port_text = after[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not port_text:
        return host, None
    if not _PORT.fullmatch(port_text) or int(port_text) > MAX_PORT:
        raise bad(f"the port is not a number from 0 to {MAX_PORT} ({ENCODING_HINT})")
    return host, int(port_text)


def _extra_of_query(query: str) -> str | None:
    if not query:
        return None
    values = dict(parse_qsl(query, keep_blank_values=True))
    if EXTRA_KEY in values:
        return values[EXTRA_KEY]
    return json.dumps(values)


def connection_uri(conn: Any) -> str:
    """The URI of a connection (anything with Connection's fields and ``extra_dejson``).

    Reading it back with :func:`parse_connection_uri` gives the same fields, whatever
    characters they hold.
    """
    if not conn.conn_type:
        raise InvalidConnection(conn.conn_id, "it has no conn_type, and a URI starts with one")
    uri = conn.conn_type.lower().replace("_", "-") + "://"
    host = conn.host or ""
    if "://" in host:
        protocol, _, host = host.partition("://")
        uri += f"{protocol}://"
    userinfo = quote(conn.login, safe="") if conn.login else ""
    if conn.password:
        userinfo += ":" + quote(conn.password, safe="")
    if userinfo:
        uri += userinfo + "@"
    uri += quote(host, safe="")
    if conn.port is not None:
        uri += f":{conn.port}"
    if conn.schema:
        uri += "/" + quote(conn.schema, safe="")
    extra = conn.extra_dejson
    if extra:
        uri += ("?" if conn.schema else "/?") + _query_of_extra(extra)
    return uri


def _query_of_extra(extra: dict[str, Any]) -> str:
    """Flat string pairs as a plain query (what people write); anything else as ``__extra__``."""
    if EXTRA_KEY not in extra and all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        return urlencode(extra)
    return urlencode({EXTRA_KEY: json.dumps(extra)})
