"""``Variable``: configuration values tasks read by key, as Airflow's ``airflow.models.Variable``.

``Variable.get`` looks in the environment (``CROSSDOCK_VAR_<KEY>``), then in the variables
file (:mod:`crossdock.secrets.backends`); no database is involved, so it works the same in
a Celery worker, a Kubernetes pod and ``crossdock tasks test``. A Variable whose key names
a secret (``db_password``, ``api_key``, see :mod:`crossdock.secrets.masking`) is masked in
the try's log as soon as it is read.

Writes go to the variables file. An environment variable cannot be changed from here:
setting a key it shadows writes the file and warns that reads still get the environment's
value (as Airflow warns when a secrets backend shadows its database).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from crossdock.secrets.backends import file_backend, find_variable, variable_places
from crossdock.secrets.environment import EnvironmentBackend, variable_env_name
from crossdock.secrets.errors import SecretsError, VariableNotFound

log = logging.getLogger("crossdock.secrets")

#: Longest key accepted (Airflow's column width).
MAX_KEY_LENGTH = 250


class _NotSet:
    def __repr__(self) -> str:
        return "NOTSET"


NOTSET: Any = _NotSet()


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key.strip():
        raise SecretsError(f"a Variable key is a non-empty string, not {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise SecretsError(f"Variable key {key[:40]!r}... is longer than {MAX_KEY_LENGTH} characters")
    return key


class Variable:
    """Class-level access to Variables; nothing is read until a method is called."""

    @classmethod
    def get(cls, key: str, default_var: Any = NOTSET, deserialize_json: bool = False) -> Any:
        """The value of ``key`` (a string, or the JSON it holds with ``deserialize_json``).

        :param default_var: returned as it is when no backend holds ``key``; without it a
            missing key raises :class:`VariableNotFound` (a ``KeyError``) saying where it looked.
        :param deserialize_json: parse the value as JSON; a value that is not JSON fails naming the key.
        """
        check_key(key)
        found = find_variable(key)
        if found is None:
            if default_var is not NOTSET:
                return default_var
            raise VariableNotFound(f"Variable {key!r} does not exist: looked in {variable_places(key)}")
        text, backend = found
        value: Any = text
        if deserialize_json:
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SecretsError(f"Variable {key!r} (from {backend.describe_variable(key)}) is not valid JSON: "
                                   f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
        from crossdock.secrets.masking import mask_secret

        mask_secret(text, key)
        if deserialize_json:
            mask_secret(value, key)  # a JSON object's values under secret-named keys, too
        return value

    @classmethod
    def set(cls, key: str, value: Any, serialize_json: bool = False) -> None:
        """Store ``value`` under ``key`` in the variables file (``str(value)``, or its JSON with
        ``serialize_json``). Warns when ``CROSSDOCK_VAR_<KEY>`` shadows the stored value."""
        check_key(key)
        text = json.dumps(value, indent=2) if serialize_json else str(value)
        backend = file_backend()
        backend.set_variables({key: text})
        warn_if_shadowed(key)

    @classmethod
    def delete(cls, key: str) -> int:
        """Remove ``key`` from the variables file; the number removed (0 or 1), as in Airflow.

        A key defined only by its environment variable cannot be deleted from here: that
        raises :class:`~crossdock.secrets.errors.SecretsError` naming the variable.
        """
        check_key(key)
        deleted = file_backend().delete_variable(key)
        if EnvironmentBackend().get_variable(key) is not None:
            if not deleted:
                raise SecretsError(f"Variable {key!r} is set by environment variable {variable_env_name(key)}, "
                                   f"which crossdock does not change; unset it where it is set")
            warn_if_shadowed(key)
        return int(deleted)


def warn_if_shadowed(key: str) -> bool:
    """Log that the environment overrides the file for ``key``; True when it does."""
    if EnvironmentBackend().get_variable(key) is None:
        return False
    log.warning("Variable %r is also set by environment variable %s, which takes precedence: reads get the "
                "environment's value until it is unset", key, variable_env_name(key))
    return True
