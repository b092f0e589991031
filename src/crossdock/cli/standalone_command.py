"""``crossdock standalone``: scheduler and the workers its executors need, in one command.

With the embedded defaults nothing else must be installed or started: LocalExecutor
tasks run as forks of a warm process, Celery workers are started as real worker
processes on the serverless broker, and Kubernetes pods run on the local pod runtime
when no kubeconfig is configured.

The Celery workers are autoscaled per queue (``[worker_queues]``: from each queue's
``min_workers``, which may be 0, up to its ``max_workers``, by its load) unless
``[worker_queues] autoscale`` is set to False, which starts one fixed worker consuming
every queue. Metrics are served on ``[metrics] host:port`` unless ``[metrics] enabled``
is set to False. The web server (REST API and UI) runs on a thread of this process on
``[webserver] host:port``; a taken port is said in one line and the rest runs without it.
"""

from __future__ import annotations

import logging

from crossdock.cli.scheduler_command import build_scheduler
from crossdock.cli.services import EmbeddedServices, standalone_autoscale

log = logging.getLogger("crossdock.standalone")


def standalone(_args) -> int:
    from crossdock.cli.dags_command import parse_dags_folder_into_db
    from crossdock.cli.webserver_command import describe as describe_webserver, start_beside_scheduler
    from crossdock.monitoring.metrics_server import start_scheduler_metrics
    from crossdock.monitoring.worker_queues import WorkerQueues

    WorkerQueues.from_config()  # a bad [worker_queues] entry stops the command here, in one line
    parse_dags_folder_into_db()
    with EmbeddedServices.for_configured_executors(autoscale=standalone_autoscale()) as services:
        job = build_scheduler()
        metrics = start_scheduler_metrics(job, monitor=services.monitor, autoscaler=services.autoscaler,
                                          default_enabled=True)
        web = None
        try:
            web = start_beside_scheduler(queue_monitor=services.monitor)
            for line in services.describe():
                print(line, flush=True)
            if metrics is not None:
                print(f"metrics at {metrics.url}", flush=True)
            if web is not None:
                print(describe_webserver(web), flush=True)
            print("crossdock standalone is running; press Ctrl-C to stop", flush=True)
            job.run(handle_signals=True)
        finally:
            if web is not None:
                web.stop()
            if metrics is not None:
                metrics.stop()
    return 0
