"""Bearer-token authentication of the runtime's listeners (the pods API and the node agent).

Whoever can reach the pods API can start processes on this machine, so nothing but the
health probes is served without the token. The token is random, made once per state
folder and kept there owner-only, so a restarted runtime keeps accepting the kubeconfig
it wrote before. A refusal is the 401 ``Status`` a kube-apiserver sends, which kubectl
and the official client report as "Unauthorized"; tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any, Mapping

from crossdock.kubernetes.local_runtime.errors import ApiError
from crossdock.kubernetes.local_runtime.private_files import private_dir, write_private

TOKEN_FILE = "token"
#: Random bytes in a token (43 characters of base64url).
TOKEN_BYTES = 32
#: Paths served to anyone, as a cluster serves them to unauthenticated probes.
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
BEARER = "bearer "


def load_or_create_token(folder: Path | str) -> str:
    """The token kept in ``folder/token``, made (random, 0600, folder 0700) on first use."""
    path = private_dir(folder) / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if not token:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        write_private(path, token + "\n")
    return token


def bearer_of(headers: Mapping[str, str] | Any) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    value = headers.get("Authorization") if headers is not None else None
    if not value or not value[: len(BEARER)].lower() == BEARER:
        return None
    return value[len(BEARER):].strip()


def client_token(api_client: Any) -> str | None:
    """The bearer token an official ``ApiClient`` sends (from its kubeconfig), or None."""
    keys = getattr(getattr(api_client, "configuration", None), "api_key", None) or {}
    value = keys.get("BearerToken") or keys.get("authorization")
    if not value:
        return None
    return value[len(BEARER):].strip() if value[: len(BEARER)].lower() == BEARER else value.strip()


def unauthorized() -> ApiError:
    """``{"kind":"Status",…,"message":"Unauthorized","reason":"Unauthorized","code":401}``."""
    return ApiError(401, "Unauthorized", reason="Unauthorized")


class BearerAuth:
    """Accepts requests that carry ``token``; compares in constant time."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty token would let anyone in")
        self._token = token.encode("utf-8")

    def accepts(self, headers: Mapping[str, str] | Any) -> bool:
        offered = bearer_of(headers)
        if offered is None:
            return False
        return hmac.compare_digest(offered.encode("utf-8"), self._token)

    def permits(self, path: str, headers: Mapping[str, str] | Any) -> bool:
        """A request may go on: it carries the token, or none on a public path (a wrong one never)."""
        if path in PUBLIC_PATHS and bearer_of(headers) is None:
            return True
        return self.accepts(headers)

    def header(self) -> dict[str, str]:
        """The header a caller of another of our listeners sends."""
        return {"Authorization": "Bearer " + self._token.decode("utf-8")}
