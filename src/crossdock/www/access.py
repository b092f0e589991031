"""The dependency every protected route has: who calls, and may they do this?

Reads (GET, HEAD) need a signed-in user of any role; anything else needs an admin.
With sign-in off every caller is the anonymous admin (loopback only, see :mod:`.listen`).
"""

from __future__ import annotations

from fastapi import Request

from crossdock.www.auth import Authenticator, User
from crossdock.www.errors import ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def authenticator(request: Request) -> Authenticator:
    return request.app.state.authenticator


def caller(request: Request) -> User:
    """The calling user; 401 without valid credentials, 403 for a viewer's action."""
    user = authenticator(request).user_for(request.headers.get("authorization"))
    if request.method not in SAFE_METHODS and not user.may_act:
        raise ApiError(403, f"user {user.name!r} has role {user.role!r}, which may read but not act")
    return user
