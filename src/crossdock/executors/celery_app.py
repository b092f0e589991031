"""The Celery application crossdock's scheduler and workers share, built from ``[celery]``.

Both sides must agree on broker, result backend, serializer and task name, so both build
the app here from the same configuration. The app is built once per process and reused:
building one costs a few milliseconds and, more importantly, each app owns a producer
pool and backend connections that are worth keeping warm. It is rebuilt only when the
configuration the app depends on changed (a test or ``conf.reload()`` pointing at another
broker).

With no servers configured the defaults need none either: kombu's filesystem transport
as broker (measured faster than the SQLAlchemy/SQLite transport here, and it supports the
broadcast messages that ``celery inspect``/``revoke`` need) and a SQLite result backend.
The keys and their defaults are declared in :mod:`crossdock.config_schema`.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from celery import Celery

from crossdock.config_schema import DEFAULT_VISIBILITY_TIMEOUT
from crossdock.configuration import ConfigError, conf, crossdock_home
from crossdock.executors.celery_config import CelerySettings
from crossdock.executors.celery_protocol import EXECUTE_COMMAND_TASK  # noqa: F401 - re-exported

APP_NAME = "crossdock"
#: How often the filesystem broker looks for new messages; the latency floor of the
#: embedded setup.
FILESYSTEM_POLLING_INTERVAL = 0.05
#: Pauses (seconds) between connection attempts while publishing; kombu's own start at 2 s.
PUBLISH_RETRY_INTERVALS = {"interval_start": 0.0, "interval_step": 0.1, "interval_max": 0.25}
#: Brokers on which kombu emulates acknowledgements with a visibility timeout.
VISIBILITY_TIMEOUT_SCHEMES = frozenset({"redis", "rediss", "sentinel", "sqs"})

#: Settings no configuration may change: JSON only, never pickle (a message a stranger
#: can write must not be able to run code on a worker).
_FIXED_SETTINGS = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
}


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.split("+", 1)[0].lower()


def _postgres_driver_url(url: str) -> str:
    """Point ``db+postgresql://`` at psycopg 3 when psycopg2 is not installed.

    SQLAlchemy's bare ``postgresql://`` means psycopg2; crossdock depends on psycopg 3, so
    the URL an Airflow user copies over would otherwise fail with an import error.
    """
    for prefix in ("db+postgresql://", "db+postgres://"):
        if url.startswith(prefix):
            try:
                import psycopg2  # noqa: F401
            except ImportError:
                return "db+postgresql+psycopg://" + url[len(prefix):]
    return url


def _transport_options(broker_url: str) -> dict[str, Any]:
    """``[celery_broker_transport_options]`` with numbers decoded and per-broker defaults."""
    options: dict[str, Any] = {}
    for key, value in conf.getsection("celery_broker_transport_options").items():
        if value is None or value == "":
            continue
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        options[key] = value
    scheme = _scheme(broker_url)
    # kombu retries a failed connect with 2 s, 4 s, ... pauses before it looks at its
    # timeout; short pauses keep a publish to a dead broker near operation_timeout, so
    # a broker outage costs the scheduler loop one timeout, not several seconds.
    for key, value in PUBLISH_RETRY_INTERVALS.items():
        options.setdefault(key, value)
    if "visibility_timeout" not in options and scheme in VISIBILITY_TIMEOUT_SCHEMES:
        options["visibility_timeout"] = DEFAULT_VISIBILITY_TIMEOUT
    if scheme == "filesystem":
        options.update({key: value for key, value in filesystem_folders(broker_url).items()
                        if key not in options})
        options.setdefault("polling_interval", FILESYSTEM_POLLING_INTERVAL)
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            os.makedirs(options[key], exist_ok=True)
    return options


def filesystem_folders(broker_url: str) -> dict[str, str]:
    """Folders of a ``filesystem:///path`` broker: one for messages, one for broadcasts.

    kombu's filesystem transport takes its folders as transport options only; crossdock
    lets the URL name the root, so one config line is the whole broker setting.
    """
    path = urlsplit(broker_url).path.lstrip("/")
    root = "/" + path if path else str(crossdock_home() / "celery-broker")
    return {
        "data_folder_in": os.path.join(root, "queue"),
        "data_folder_out": os.path.join(root, "queue"),
        "control_folder": os.path.join(root, "control"),
    }


def _ssl_settings(celery: CelerySettings) -> dict[str, Any]:
    if not celery.ssl_active:
        return {}
    files = {
        "keyfile": celery.ssl_key or None,
        "certfile": celery.ssl_cert or None,
        "ca_certs": celery.ssl_cacert or None,
    }
    scheme = _scheme(celery.broker_url)
    if scheme in ("redis", "rediss"):
        use_ssl = {"ssl_keyfile": files["keyfile"], "ssl_certfile": files["certfile"],
                   "ssl_ca_certs": files["ca_certs"], "ssl_cert_reqs": ssl.CERT_REQUIRED}
    elif scheme in ("amqp", "amqps", "pyamqp"):
        use_ssl = {**files, "cert_reqs": ssl.CERT_REQUIRED}
    else:
        raise ConfigError(f"[celery] ssl_active is set but broker {scheme!r} has no TLS settings "
                          f"crossdock knows; use redis or amqp")
    return {"broker_use_ssl": use_ssl}


def celery_settings() -> dict[str, Any]:
    """The Celery settings crossdock runs with, from ``[celery]`` and ``[core]``."""
    celery = CelerySettings.from_conf()
    broker_url = celery.broker_url
    result_backend = _postgres_driver_url(celery.result_backend)
    operation_timeout = celery.operation_timeout
    settings: dict[str, Any] = {
        "broker_url": broker_url,
        "result_backend": result_backend,
        "broker_transport_options": _transport_options(broker_url),
        "broker_connection_timeout": operation_timeout,
        "broker_connection_retry_on_startup": True,
        "result_backend_transport_options": {"socket_timeout": max(operation_timeout, 5.0)},
        "redis_socket_connect_timeout": operation_timeout,
        "task_default_queue": conf.getstr("core", "default_queue"),
        "task_acks_late": celery.task_acks_late,
        # The worker records STARTED itself, atomically, as the claim that prevents a
        # redelivered message from running twice (see celery_claim). Celery's own
        # tracking would write STARTED unconditionally before that check.
        "task_track_started": False,
        "task_reject_on_worker_lost": False,
        "worker_prefetch_multiplier": celery.worker_prefetch_multiplier,
        "worker_concurrency": celery.worker_concurrency,
        "worker_pool": celery.pool,
        "worker_enable_remote_control": celery.worker_enable_remote_control,
        "result_extended": False,
        "task_ignore_result": False,
        "database_engine_options": {"pool_pre_ping": True},
        **_ssl_settings(celery),
    }
    if _scheme(broker_url) == "filesystem":
        from crossdock.executors.filesystem_broker import TRANSPORT

        settings["broker_transport"] = TRANSPORT
    if result_backend.startswith("db+sqlite"):
        settings["database_engine_options"] = {"connect_args": {"timeout": 30}}
    if result_backend.startswith("db+"):
        # Airflow's name for Celery's database_engine_options; the user's keys win.
        settings["database_engine_options"] = {**settings["database_engine_options"],
                                               **celery.result_backend_sqlalchemy_engine_options}
    settings.update(celery.extra_celery_config)
    settings.update(_FIXED_SETTINGS)
    return settings


_lock = threading.Lock()
_app: Celery | None = None
_app_fingerprint: str | None = None


def _fingerprint(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def create_celery_app(settings: dict[str, Any] | None = None) -> Celery:
    """A new app with crossdock's task registered; prefer :func:`get_celery_app`."""
    from crossdock.executors.celery_worker import register_tasks

    app = Celery(APP_NAME, set_as_current=False)
    app.conf.update(settings if settings is not None else celery_settings())
    register_tasks(app)
    return app


def get_celery_app() -> Celery:
    """The process's app, rebuilt only when the settings it was built from changed."""
    global _app, _app_fingerprint
    settings = celery_settings()
    fingerprint = _fingerprint(settings)
    with _lock:
        if _app is None or fingerprint != _app_fingerprint:
            previous = _app
            _app, _app_fingerprint = create_celery_app(settings), fingerprint
            if previous is not None:
                _close_app(previous)
        return _app


def _close_app(app: Celery) -> None:
    """Release the pools of an app that was replaced, without failing the caller."""
    try:
        app.close()
    except Exception:  # noqa: BLE001 - a broken old connection must not break the new app
        pass


def __getattr__(name: str) -> Any:
    """``celery -A crossdock.executors.celery_app`` finds the app as ``app``."""
    if name == "app":
        return get_celery_app()
    raise AttributeError(name)
