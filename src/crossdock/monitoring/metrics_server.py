"""``GET /metrics`` on ``[metrics] host:port``: the scheduler's metrics over HTTP.

prometheus-client's own WSGI server serves the page from a daemon thread, so a scrape
is never handled by the scheduler loop. The listener binds 127.0.0.1 unless configured;
another address is allowed (the page is read-only) with a warning that it is served
without authentication. Port 0 picks a free port, and the address chosen is logged.
A port already taken is a start-up error naming the key and the address.

:func:`start_scheduler_metrics` is the one way a command turns metrics on for its
scheduler: ``crossdock scheduler`` (off unless ``[metrics] enabled``) and ``crossdock
standalone`` (on unless ``[metrics] enabled`` is set to false).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from typing import Any

from crossdock.configuration import ConfigError, conf
from crossdock.monitoring.metrics import SchedulerMetrics

log = logging.getLogger("crossdock.monitoring")

#: Path Prometheus scrapes (prometheus-client's server answers on every path but favicon).
METRICS_PATH = "/metrics"
#: Highest TCP port number.
MAX_PORT = 65535


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return address == "localhost"


class MetricsServer:
    """An HTTP listener serving one registry; it listens once constructed.

    :param host: address to bind (a name or an IPv4/IPv6 address).
    :param port: port to bind; 0 picks a free one (see :attr:`port`).
    :param registry: the prometheus-client registry to serve.
    """

    def __init__(self, *, host: str, port: int, registry: Any) -> None:
        from prometheus_client import start_http_server

        if isinstance(port, bool) or not 0 <= port <= MAX_PORT:
            raise ConfigError(f"[metrics] port must be between 0 and {MAX_PORT}, got {port!r}")
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"[metrics] port {port}: cannot serve metrics on {where}: the address is "
                                  f"already in use (set [metrics] port to a free port, or 0 to pick one)") from None
            reason = exc.strerror or str(exc)
            raise ConfigError(f"[metrics] host/port: cannot serve metrics on {where}: {reason}") from None
        self.host = self._server.server_address[0]
        self.port = self._server.server_address[1]
        if not _is_loopback(self.host):
            log.warning("metrics are served on %s without authentication: anyone who can reach the address "
                        "can read them ([metrics] host)", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{METRICS_PATH}"

    def stop(self) -> None:
        """Stop listening and free the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._thread.join(timeout=5)


class MetricsHandle:
    """A running metrics endpoint and what feeds it; :meth:`stop` ends what it started."""

    def __init__(self, *, metrics: SchedulerMetrics, server: MetricsServer, monitor: Any,
                 owns_monitor: bool) -> None:
        self.metrics = metrics
        self.server = server
        self.monitor = monitor
        self._owns_monitor = owns_monitor

    @property
    def url(self) -> str:
        """``http://host:port/metrics`` as bound (the real port when 0 was asked)."""
        return self.server.url

    @property
    def autoscaler(self) -> Any:
        return self.metrics.collector.autoscaler

    @autoscaler.setter
    def autoscaler(self, autoscaler: Any) -> None:
        """Show an autoscaler started after the endpoint (reads ``last_decisions``, ``pool.driver``)."""
        self.metrics.collector.autoscaler = autoscaler

    def watch(self, job: Any) -> None:
        """Follow a new scheduler job (a scheduler that starts over after losing the lease)."""
        self.metrics.watch(job)

    def stop(self) -> None:
        """Stop the listener, let the job go, stop the queue monitor if it was started here."""
        self.server.stop()
        self.metrics.unwatch()
        if self._owns_monitor and self.monitor is not None:
            self.monitor.stop()

    def __enter__(self) -> "MetricsHandle":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def metrics_enabled(*, default_enabled: bool = False) -> bool:
    """``[metrics] enabled`` when the user set it, else ``default_enabled``."""
    if conf.has_option("metrics", "enabled"):
        return conf.getboolean("metrics", "enabled")
    return default_enabled


def start_scheduler_metrics(job: Any, *, monitor: Any = None, autoscaler: Any = None,
                            default_enabled: bool = False) -> MetricsHandle | None:
    """Serve ``job``'s metrics on ``[metrics] host:port``; None when metrics are off.

    :param job: the scheduler job (``SchedulerJob``) whose transitions, loop steps,
        executors and adoptions are counted; call it before ``job.run()``.
    :param monitor: a started queue monitor to read queue numbers from; default: a
        :class:`~crossdock.monitoring.queue_monitor.QueueMonitor` started here and
        stopped by the handle's ``stop()``.
    :param autoscaler: an object with ``last_decisions`` (queue → decision with
        ``desired`` and ``actual``) and ``pool.driver``; may be set later on the handle.
    :param default_enabled: whether metrics are on when ``[metrics] enabled`` is not
        set by the user (``crossdock standalone`` passes True).
    :raises ConfigError: the address cannot be bound (a port taken names it).
    """
    if not metrics_enabled(default_enabled=default_enabled):
        return None
    metrics = SchedulerMetrics()
    server = MetricsServer(host=conf.getstr("metrics", "host"), port=conf.getint("metrics", "port"),
                           registry=metrics.registry)
    owns_monitor = monitor is None
    try:
        if owns_monitor:
            from crossdock.monitoring.queue_monitor import QueueMonitor

            monitor = QueueMonitor().start()
        metrics.collector.monitor = monitor
        metrics.collector.autoscaler = autoscaler
        metrics.watch(job)
    except BaseException:
        server.stop()
        raise
    log.info("serving Prometheus metrics on %s", server.url)
    return MetricsHandle(metrics=metrics, server=server, monitor=monitor, owns_monitor=owns_monitor)
