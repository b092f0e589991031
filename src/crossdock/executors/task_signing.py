"""Optional signatures on task messages, so a broker user without the key cannot inject a try.

The command check (:mod:`crossdock.runner.command`) already keeps a message from naming
anything but a DAG file in the DAGs folder. Anyone who can write to the broker could
still make a worker run a real task of a real DAG whenever they like. With
``[celery] task_signing_key`` set on the scheduler and the workers, the executor signs
what it publishes and a worker runs only messages whose signature checks out.

The signature is an HMAC-SHA256 over the Celery task id and the command, so a signed
message cannot be replayed under a fresh task id (the same id is stopped by the claim
in the result backend) nor have its command changed. The key is a secret: it is
never logged, ``config list`` masks it (its name ends in ``key``) and it is never
handed to a pod or a try (:mod:`crossdock.config_secrets`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Sequence

from crossdock.runner.command import InvalidCommandError

#: Keyword argument of ``crossdock.execute_command`` that carries the signature.
SIGNATURE_KWARG = "signature"
#: Prefix naming the scheme, so a future scheme can be told apart.
SIGNATURE_SCHEME = "hmac-sha256:"


class SignatureError(InvalidCommandError):
    """A task message's signature is missing or wrong; nothing was run."""


def signing_key() -> bytes | None:
    """``[celery] task_signing_key`` as bytes, or None when signing is off."""
    from crossdock.configuration import conf

    key = conf.getstr("celery", "task_signing_key", fallback="")
    return key.encode("utf-8") if key else None


def _payload(task_id: str, command: Sequence[str]) -> bytes:
    return json.dumps({"task_id": str(task_id), "command": list(command)}, separators=(",", ":"),
                      sort_keys=True, ensure_ascii=True).encode("ascii")


def sign(task_id: str, command: Sequence[str], key: bytes) -> str:
    digest = hmac.new(key, _payload(task_id, command), hashlib.sha256).hexdigest()
    return SIGNATURE_SCHEME + digest


def signature_kwargs(task_id: str, command: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments to publish with ``command``: a signature when a key is configured."""
    key = signing_key()
    return {SIGNATURE_KWARG: sign(task_id, command, key)} if key else {}


def verify(task_id: str, command: Any, signature: Any) -> None:
    """Raise :class:`SignatureError` when a key is configured and ``signature`` does not match.

    With no key configured every message passes (signing is off). The comparison is
    constant-time, so the time a refusal takes tells nothing about the right signature.
    """
    key = signing_key()
    if key is None:
        return
    if not signature:
        raise SignatureError("refusing to run an unsigned task message: this worker requires "
                             "signed messages ([celery] task_signing_key is set)")
    if not isinstance(signature, str) or not isinstance(command, (list, tuple)) \
            or not all(isinstance(part, str) for part in command):
        raise SignatureError("refusing to run a task message with a malformed signature or command")
    expected = sign(task_id, command, key)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        raise SignatureError("refusing to run a task message whose signature does not match: it was "
                             "not signed with this worker's [celery] task_signing_key")
