"""Which settings are secrets, how they are shown masked, and what a task try may inherit.

One place decides this so that ``crossdock config list``, log lines and the environment
handed to pods and tries all agree (design principles 1 and 8):

* **masked when shown**: a password inside any URL (``amqp://user:***@host``), and the
  whole value of a key whose name says it is a secret (``*password*``, ``*secret*``,
  ``*key*``, ``*token*``, ``*auth*``, ``*credential*``) or that Airflow's convention
  marks as a pointer to one (``*_cmd``, ``*_secret``);
* **kept from tries**: everything a try does not read and a stranger could use. A try
  runs one task from a DAG file and reports through its executor's channel, so it needs
  neither the metadata database (``[database]``), nor the broker or result backend
  (``[celery]``, ``[celery_broker_transport_options]``), nor any secret-named key.
"""

from __future__ import annotations

import re
from typing import Mapping

from crossdock.configuration import ENV_PREFIX

MASK = "***"

#: Parts of a key name (split at ``_``) that mark its value as a secret.
SECRET_NAME_PARTS = frozenset({"password", "passwd", "secret", "key", "token", "auth", "credential",
                               "credentials", "cmd"})
#: Sections a task try never reads: server credentials live there.
SECTIONS_KEPT_FROM_TRIES = frozenset({"database", "celery", "celery_broker_transport_options"})

#: ``scheme://user:password@`` anywhere in a value (several URLs may share one value).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:;,]*:)(?P<password>[^\s@/;,]+)(?P<at>@)")


def redact_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (user and host kept)."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}{m.group('at')}", str(text))


def has_url_password(text: str) -> bool:
    return bool(_URL_PASSWORD.search(str(text)))


def is_secret_key(key: str) -> bool:
    """True for a key whose name says its value is a secret (``task_signing_key``, ``basic_auth``)."""
    return any(part in SECRET_NAME_PARTS for part in key.lower().split("_"))


def mask_setting(section: str, key: str, value: object) -> str:
    """How ``[section] key = value`` is shown to a person: secrets masked, URLs without passwords."""
    text = "" if value is None else str(value)
    if text and is_secret_key(key):
        return MASK
    return redact_url(text)


def try_may_inherit(section: str, key: str) -> bool:
    """Whether a task try (a pod, a worker's fork) may see ``[section] key`` in its environment."""
    return section.lower() not in SECTIONS_KEPT_FROM_TRIES and not is_secret_key(key)


def _setting_of_env_name(name: str) -> tuple[str, str] | None:
    if not name.startswith(ENV_PREFIX):
        return None
    section, sep, key = name[len(ENV_PREFIX):].partition("__")
    return (section.lower(), key.lower()) if sep else None


def environment_for_try(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the ``CROSSDOCK__…`` settings a try must not inherit.

    Other variables pass unchanged: they are the user's (a try may need them) and
    crossdock cannot tell which of them matter.
    """
    kept: dict[str, str] = {}
    for name, value in environ.items():
        setting = _setting_of_env_name(name)
        if setting is not None and (not try_may_inherit(*setting) or has_url_password(value)):
            continue
        kept[name] = value
    return kept


def scrub_try_environment(environ) -> list[str]:
    """Remove, in place, what :func:`environment_for_try` leaves out; return the names removed."""
    allowed = environment_for_try(environ)
    removed = [name for name in list(environ) if name not in allowed]
    for name in removed:
        del environ[name]
    return removed


def environment_for_worker(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without ``[database]`` settings: a Celery worker never opens the metadata DB."""
    return {name: value for name, value in environ.items()
            if (_setting_of_env_name(name) or ("", ""))[0] != "database"}
