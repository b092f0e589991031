"""Who is calling: configured users with scrypt-hashed passwords, and sign-in tokens.

``[webserver] auth_users`` empty means no sign-in: every caller acts as an admin, which
is allowed only while the server listens on a loopback address (see :mod:`.listen`).
Set, every API call names a user, in a header only:

* ``Authorization: Basic <user:password>`` — for scripts and Airflow clients (Airflow's
  ``basic_auth`` backend); a checked password is remembered for a while (by an HMAC of
  it, never the password) so scripts do not pay scrypt on every call;
* ``Authorization: Bearer <token>`` — the token ``POST /api/v1/crossdock/session``
  returns for a user and password (what the UI's sign-in does); it lasts
  ``[webserver] session_lifetime`` seconds or until ``DELETE`` of the session, and lives
  in this process only (a restart signs everybody out).

No cookie is ever set and a 401 never asks for Basic credentials (``WWW-Authenticate:
Bearer``), so a browser holds nothing it would attach by itself to a request another
site makes: that, with :mod:`.request_guard`, is the CSRF defence. Role ``viewer`` may
read; ``admin`` may also act.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from crossdock.configuration import ConfigError
from crossdock.exceptions import CrossdockError
from crossdock.www.passwords import hash_password, parse_hash, verify_password

ADMIN, VIEWER = "admin", "viewer"
ROLES = (ADMIN, VIEWER)
#: Seconds a checked Basic password is remembered.
BASIC_CACHE_SECONDS = 300.0
#: Most remembered Basic passwords and open sign-ins (the oldest go first).
MAX_REMEMBERED = 1024


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Checked against when the user does not exist, so an unknown name costs what a known one does."""
    return hash_password("not a password", salt=b"crossdock-dummy!")


class Unauthenticated(CrossdockError):
    """No valid credentials (401)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def may_act(self) -> bool:
        return self.role == ADMIN


#: Who every caller is when sign-in is off.
ANONYMOUS = User("anonymous", ADMIN)


@dataclass(frozen=True)
class UserEntry:
    password_hash: str
    role: str


def parse_users(raw: Any) -> dict[str, UserEntry]:
    """``[webserver] auth_users`` checked: ConfigError naming the user and what is wrong."""
    if not isinstance(raw, Mapping):
        raise ConfigError("[webserver] auth_users must be a JSON object: user name -> "
                          "{\"password_hash\": ..., \"role\": \"admin\" or \"viewer\"}")
    users = {}
    for name, entry in raw.items():
        if not isinstance(name, str) or not name or ":" in name:
            raise ConfigError(f"[webserver] auth_users: user name {name!r} must be non-empty text without ':'")
        if not isinstance(entry, Mapping) or not isinstance(entry.get("password_hash"), str):
            raise ConfigError(f"[webserver] auth_users: user {name!r} needs a \"password_hash\" "
                              f"(make one with: crossdock webserver --hash-password)")
        role = entry.get("role", ADMIN)
        if role not in ROLES:
            raise ConfigError(f"[webserver] auth_users: user {name!r} has role {role!r}; roles: {', '.join(ROLES)}")
        unknown = sorted(set(entry) - {"password_hash", "role"})
        if unknown:
            raise ConfigError(f"[webserver] auth_users: user {name!r} has unknown keys {', '.join(unknown)}")
        parse_hash(entry["password_hash"], user=name)
        users[name] = UserEntry(password_hash=entry["password_hash"], role=role)
    return users


class Authenticator:
    """Checks credentials and keeps sign-in tokens (see the module docstring).

    :param users: user name → entry (:func:`parse_users`); empty turns sign-in off.
    :param session_lifetime: seconds a sign-in token is valid.
    :param clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, *, users: Mapping[str, UserEntry], session_lifetime: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.users = dict(users)
        self.session_lifetime = float(session_lifetime)
        self.clock = clock
        self._tokens: dict[str, tuple[User, float]] = {}
        self._checked: dict[bytes, tuple[User, float]] = {}
        self._cache_key = os.urandom(32)
        self._lock = threading.Lock()

    @classmethod
    def from_conf(cls) -> "Authenticator":
        from crossdock.configuration import conf

        return cls(users=parse_users(conf.getjson("webserver", "auth_users")),
                   session_lifetime=conf.getfloat("webserver", "session_lifetime"))

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    # -- passwords ----------------------------------------------------------------------
    def check_password(self, name: str, password: str) -> User | None:
        """The user, when ``password`` is theirs; None otherwise."""
        entry = self.users.get(name)
        if entry is None:
            verify_password(password, _dummy_hash())
            return None
        if not verify_password(password, entry.password_hash, user=name):
            return None
        return User(name, entry.role)

    def _check_basic(self, name: str, password: str) -> User | None:
        digest = hmac.new(self._cache_key, f"{name}\0{password}".encode("utf-8"), hashlib.sha256).digest()
        now = self.clock()
        with self._lock:
            remembered = self._checked.get(digest)
        if remembered is not None and remembered[1] > now:
            return remembered[0]
        user = self.check_password(name, password)
        if user is not None:
            with self._lock:
                self._remember(self._checked, digest, (user, now + BASIC_CACHE_SECONDS))
        return user

    # -- sign-in tokens -------------------------------------------------------------------
    def login(self, name: str, password: str) -> dict[str, Any]:
        """A new token for the user (Unauthenticated for a wrong name or password)."""
        user = self.check_password(name, password)
        if user is None:
            raise Unauthenticated("wrong user name or password")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._remember(self._tokens, self._token_key(token), (user, self.clock() + self.session_lifetime))
        return {"token": token, "expires_in": self.session_lifetime, "user": user.name, "role": user.role}

    def logout(self, token: str) -> bool:
        with self._lock:
            return self._tokens.pop(self._token_key(token), None) is not None

    @staticmethod
    def _token_key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def _remember(self, table: dict, key: Any, value: tuple[User, float]) -> None:
        now = self.clock()
        for old in [k for k, (_, expires) in table.items() if expires <= now]:
            del table[old]
        while len(table) >= MAX_REMEMBERED:
            del table[next(iter(table))]
        table[key] = value

    # -- requests -----------------------------------------------------------------------
    def user_for(self, authorization: str | None) -> User:
        """Who an ``Authorization`` header names; ANONYMOUS when sign-in is off."""
        if not self.enabled:
            return ANONYMOUS
        if not authorization:
            raise Unauthenticated("sign in: send Authorization: Basic (user:password) or Bearer (a token "
                                  "from POST /api/v1/crossdock/session)")
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            with self._lock:
                found = self._tokens.get(self._token_key(value))
            if found is None or found[1] <= self.clock():
                raise Unauthenticated("the token is not valid or has expired; sign in again")
            return found[0]
        if scheme.lower() == "basic" and value:
            try:
                name, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthenticated("the Basic credentials are not base64 of user:password") from None
            user = self._check_basic(name, password) if sep else None
            if user is None:
                raise Unauthenticated("wrong user name or password")
            return user
        raise Unauthenticated(f"unsupported Authorization scheme {scheme!r}; use Basic or Bearer")
