"""Password hashes for ``[webserver] auth_users``: scrypt, salted, never the password itself.

The stored form is ``scrypt$N$r$p$<salt>$<hash>`` (base64 without padding), made by
``crossdock webserver --hash-password``. Checking takes the parameters from the stored
form, so raising the cost later leaves older hashes valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from crossdock.configuration import ConfigError

SCHEME = "scrypt"
#: scrypt cost: 2**14 blocks of 8 × 128 bytes (16 MiB, tens of milliseconds per check).
DEFAULT_N, DEFAULT_R, DEFAULT_P = 2 ** 14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
#: Memory a check may use; allows parameters up to N=2**16 with r=8.
MAX_MEMORY = 128 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P,
                  salt: bytes | None = None) -> str:
    """The stored form of ``password``.

    :param n: / :param r: / :param p: scrypt's cost, block size and parallelism.
    :param salt: random bytes (a fresh :data:`SALT_BYTES` when None; given only by tests).
    """
    if not password:
        raise ValueError("an empty password cannot be hashed")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAX_MEMORY,
                            dklen=HASH_BYTES)
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def parse_hash(stored: str, *, user: str) -> tuple[int, int, int, bytes, bytes]:
    """``(n, r, p, salt, digest)`` of a stored hash; ConfigError naming the user when malformed."""
    parts = stored.split("$") if isinstance(stored, str) else []
    try:
        if len(parts) != 6 or parts[0] != SCHEME:
            raise ValueError
        n, r, p = (int(value) for value in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
        if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * r * n > MAX_MEMORY or not salt or not digest:
            raise ValueError
    except ValueError:
        raise ConfigError(f"[webserver] auth_users: the password_hash of user {user!r} is not a "
                          f"'{SCHEME}$N$r$p$salt$hash' value; make one with: crossdock webserver "
                          f"--hash-password") from None
    return n, r, p, salt, digest


def verify_password(password: str, stored: str, *, user: str = "?") -> bool:
    """Whether ``password`` matches the stored hash (compared in constant time)."""
    n, r, p, salt, digest = parse_hash(stored, user=user)
    candidate = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAX_MEMORY,
                               dklen=len(digest))
    return hmac.compare_digest(candidate, digest)
