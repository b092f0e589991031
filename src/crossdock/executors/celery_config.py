"""The ``[celery]`` settings that shape the Celery app, read once into one object.

The scheduler's producer and every worker build their app from the same values, so the
values are gathered in one frozen object instead of being read key by key while the
app's settings are put together: a reader sees every knob the app obeys in one place,
and a bad value fails before any connection is made. Importing this module imports no
Celery; the keys are declared in :mod:`crossdock.config_schema`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from crossdock.configuration import ConfigError, conf

SECTION = "celery"


@dataclass(frozen=True)
class CelerySettings:
    """The app-shaping keys of ``[celery]``; see their declarations for what each means."""

    broker_url: str
    result_backend: str
    operation_timeout: float
    task_acks_late: bool
    worker_prefetch_multiplier: int
    worker_concurrency: int
    pool: str
    worker_enable_remote_control: bool
    ssl_active: bool = False
    ssl_key: str = ""
    ssl_cert: str = ""
    ssl_cacert: str = ""
    result_backend_sqlalchemy_engine_options: Mapping[str, Any] = field(default_factory=dict)
    extra_celery_config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_conf(cls) -> "CelerySettings":
        operation_timeout = conf.getfloat(SECTION, "operation_timeout")
        if operation_timeout <= 0:
            raise ConfigError(f"[{SECTION}] operation_timeout must be positive, got {operation_timeout}")
        return cls(
            broker_url=conf.getstr(SECTION, "broker_url"),
            result_backend=conf.getstr(SECTION, "result_backend"),
            operation_timeout=operation_timeout,
            task_acks_late=conf.getboolean(SECTION, "task_acks_late"),
            worker_prefetch_multiplier=conf.getint(SECTION, "worker_prefetch_multiplier"),
            worker_concurrency=conf.getint(SECTION, "worker_concurrency"),
            pool=conf.getstr(SECTION, "pool"),
            worker_enable_remote_control=conf.getboolean(SECTION, "worker_enable_remote_control"),
            ssl_active=conf.getboolean(SECTION, "ssl_active"),
            ssl_key=conf.getstr(SECTION, "ssl_key"),
            ssl_cert=conf.getstr(SECTION, "ssl_cert"),
            ssl_cacert=conf.getstr(SECTION, "ssl_cacert"),
            result_backend_sqlalchemy_engine_options=conf.getjson(
                SECTION, "result_backend_sqlalchemy_engine_options"),
            extra_celery_config=conf.getjson(SECTION, "extra_celery_config"),
        )
