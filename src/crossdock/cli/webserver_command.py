"""``crossdock webserver``: the REST API and the web UI, until Ctrl-C or SIGTERM.

``--hash-password`` prints the hash of a password for ``[webserver] auth_users`` instead
(read from the terminal twice, or as the first line of standard input).
"""

from __future__ import annotations

import getpass
import sys

from crossdock.cli.errors import CliError


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise CliError("the two passwords differ; nothing was hashed")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CliError("an empty password cannot be hashed")
    return password


def describe(server) -> str:
    """The line that says where the server is and how it is guarded."""
    return (f"webserver at {server.url} (REST API {server.url}/api/v1, OpenAPI {server.url}/api/v1/openapi.json; "
            f"sign-in {server.sign_in})")


def start_beside_scheduler(*, queue_monitor=None):
    """The web server on a thread of this process (``crossdock standalone``), or None when its
    port is taken (said in one line: the scheduler still runs). A non-loopback host without
    ``[webserver] auth_users`` stops the command, as ``crossdock webserver`` does.

    :param queue_monitor: the started queue monitor the queues page shows (the autoscaler's).
    """
    from crossdock.www.server import AddressInUse, WebServer

    try:
        return WebServer(queue_monitor=queue_monitor).start()
    except AddressInUse as exc:
        print(f"webserver not started: {exc}", flush=True)
        return None


def webserver(args) -> int:
    from crossdock.configuration import conf
    from crossdock.database import check_connection, ensure_migrated
    from crossdock.www.passwords import hash_password
    from crossdock.www.server import WebServer

    if args.hash_password:
        print(hash_password(_read_password()))
        return 0
    conf.validate(also=["webserver"])
    server = WebServer(host=args.host, port=args.port, log_level=args.log_level).bind()
    check_connection()
    ensure_migrated()
    print(f"crossdock {describe(server)}; press Ctrl-C to stop", flush=True)
    server.serve_forever()
    return 0
