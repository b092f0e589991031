"""Where the web server may listen: a loopback address, or any address with sign-in on.

Without ``[webserver] auth_users`` anyone who reaches the port may trigger, clear and
delete, so only this machine may reach it. A host name counts as loopback only when
every address it resolves to is one (``localhost`` does; ``0.0.0.0`` and ``::`` are
every interface and do not).
"""

from __future__ import annotations

import ipaddress
import socket

from crossdock.configuration import ConfigError

#: Names accepted for this machine without resolving them.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


def check_listen_address(host: str, *, auth_enabled: bool) -> None:
    """ConfigError unless ``host`` is loopback or sign-in is on (the server must not start)."""
    if auth_enabled or is_loopback(host):
        return
    raise ConfigError(f"the web server would listen on {host}, which other machines can reach, with no "
                      f"sign-in: set [webserver] auth_users (users with password hashes from 'crossdock "
                      f"webserver --hash-password'), or listen on 127.0.0.1")
