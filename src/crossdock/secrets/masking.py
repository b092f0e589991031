"""Secrets masked out of a try's output, as Airflow's secrets masker does.

A value is *registered* (:func:`mask_secret`), and from then on every occurrence of it in
what :func:`redact` is given becomes ``***``. crossdock registers on its own, when a task
reads them: the password of every connection, the values in a connection's ``extra``
whose key names a secret, and the value of every Variable whose key names one (see
:data:`DEFAULT_SENSITIVE_NAMES`, extended by ``[core] sensitive_var_conn_names``).

What is masked in a try (the runner turns it on):

* ``logging`` records reaching the try's handler (:class:`RedactingFilter`): message,
  arguments, traceback and stack;
* text the task's Python code writes through ``sys.stdout``/``sys.stderr`` (``print``,
  tracebacks, the runner's own lines), once a secret is registered
  (:func:`redact_std_streams`).

What is not: bytes written straight to file descriptors 1 and 2 — by a subprocess, a
BashOperator's ``bash``, C code or ``sys.stdout.buffer`` — as those never pass through
Python; a secret a task receives any other way (XCom, its own file) until the task calls
:func:`mask_secret`; and values shorter than :data:`MIN_SECRET_LENGTH`, which would turn
ordinary words into ``***``. Masking works on whole values: a secret split across two
writes is not recognised.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any, Callable, Iterable

MASK = "***"

#: Airflow's list: a Variable or ``extra`` key containing one of these holds a secret.
DEFAULT_SENSITIVE_NAMES = frozenset({
    "access_token", "api_key", "apikey", "authorization", "passphrase", "passwd", "password",
    "private_key", "secret", "token", "keyfile_dict", "service_account",
})

#: Shorter values are not masked (Airflow's ``min_length_masked_secret`` default): masking
#: a password ``"ab"`` would blank out every ``ab`` in the log and protect nothing.
MIN_SECRET_LENGTH = 5


# -- which names are sensitive ------------------------------------------------------------
def sensitive_names() -> frozenset[str]:
    """Airflow's names plus the comma-separated ``[core] sensitive_var_conn_names``."""
    from crossdock.configuration import ConfigError, conf

    try:
        extra = conf.getstr("core", "sensitive_var_conn_names")
    except ConfigError:
        extra = ""
    added = {name.strip().lower() for name in extra.split(",") if name.strip()}
    return DEFAULT_SENSITIVE_NAMES | added if added else DEFAULT_SENSITIVE_NAMES


def is_sensitive_name(name: str, names: Iterable[str] | None = None) -> bool:
    """True when ``name`` contains a sensitive word (``db_password``, ``API_KEY``, ``my_token``)."""
    lowered = str(name).lower()
    return any(word in lowered for word in (sensitive_names() if names is None else names))


# -- the registry -------------------------------------------------------------------------
class _Registry:
    """The values registered in this process, and one regular expression matching them all."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None
        self.lock = threading.Lock()

    def add(self, values: Iterable[str]) -> bool:
        """Register ``values``; True when one was new."""
        with self.lock:
            new = {value for value in values if value not in self.values}
            if not new:
                return False
            self.values |= new
            # Longest first: a secret that contains another is masked whole.
            ordered = sorted(self.values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(value) for value in ordered))
            return True


_registry = _Registry()


def _forms(value: str) -> list[str]:
    """The ways a value commonly appears in output: as it is, URL-quoted (a connection URI
    prints its password so) and JSON-escaped (a dict printed as JSON)."""
    from urllib.parse import quote

    if len(value) < MIN_SECRET_LENGTH:
        return []
    forms = {value, quote(value, safe=""), quote(value), _json_inner(value)}
    return [form for form in forms if len(form) >= MIN_SECRET_LENGTH]


def _json_inner(value: str) -> str:
    import json

    return json.dumps(value)[1:-1]


def _collect(value: Any, name: str | None, hide: bool, names: frozenset[str], found: list[str]) -> None:
    """Add to ``found`` the forms of each string in ``value`` that is a secret: every one
    when ``hide`` (it sits under a secret name), else a string read under no name at all."""
    if isinstance(value, str):
        if hide or name is None:
            found.extend(_forms(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            key = str(key)
            _collect(item, key, hide or is_sensitive_name(key, names), names, found)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _collect(item, name, hide, names, found)


def mask_secret(value: Any, name: str | None = None) -> None:
    """Mask ``value`` in the try's output from now on (Airflow's ``mask_secret``).

    :param value: a string is masked whole; in a dict (a connection's ``extra``, a JSON
        Variable) the strings under keys that name a secret are, at any depth; lists
        are walked. Other types are left alone.
    :param name: the key the value was read under: given and not naming a secret, a
        string is left alone (dicts are still walked). Without it, a string is a secret.
    """
    if value is None or value == "":
        return
    names = sensitive_names()
    found: list[str] = []
    _collect(value, name, name is not None and is_sensitive_name(name, names), names, found)
    if found and _registry.add(found):
        _streams.secret_registered()


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    pattern = _registry.pattern
    if pattern is None or not isinstance(text, str):
        return text
    return pattern.sub(MASK, text)


def has_secrets() -> bool:
    return _registry.pattern is not None


# -- logging --------------------------------------------------------------------------------
class RedactingFilter(logging.Filter):
    """Redacts each record's message, traceback and stack before a handler formats it.

    Put it on a *handler*: a handler's filters see the records of every logger that
    propagates to it, a logger's only its own.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if _registry.pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit: logging reports it itself
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# -- sys.stdout / sys.stderr ------------------------------------------------------------------
class RedactingStream:
    """A text stream that writes through :func:`redact`; everything else is the wrapped one's."""

    def __init__(self, stream: Any):
        self.wrapped = stream

    def write(self, text: str) -> int:
        self.wrapped.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


class _StreamGuard:
    """Wraps ``sys.stdout``/``sys.stderr`` while enabled and some secret is registered.

    Wrapping only once there is a secret keeps the common try (one that reads none) on
    the plain streams, with no cost per write.
    """

    def __init__(self) -> None:
        self.enabled = False

    def secret_registered(self) -> None:
        if self.enabled:
            self.wrap()

    def wrap(self) -> None:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, RedactingStream):
                setattr(sys, name, RedactingStream(stream))

    def unwrap(self) -> None:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, RedactingStream):  # one the task replaced is the task's
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
                setattr(sys, name, stream.wrapped)


_streams = _StreamGuard()


def redact_std_streams() -> Callable[[], None]:
    """Redact ``sys.stdout``/``sys.stderr`` from the first registered secret on (now, if
    one is registered already); return the function that puts the plain streams back."""
    _streams.enabled = True
    if has_secrets():
        _streams.wrap()

    def undo() -> None:
        _streams.enabled = False
        _streams.unwrap()

    return undo
