"""``crossdock standalone``: scheduler and the workers its executors need, in one command.

With the embedded defaults nothing else must be installed or started: LocalExecutor
tasks run as forks of a warm process, Celery workers are started as real worker
processes on the serverless broker, and Kubernetes pods run on the local pod runtime
when no kubeconfig is configured.
"""

from __future__ import annotations

import logging

from crossdock.cli.scheduler_command import build_scheduler
from crossdock.cli.services import EmbeddedServices

log = logging.getLogger("crossdock.standalone")


def standalone(_args) -> int:
    from crossdock.cli.dags_command import parse_dags_folder_into_db

    parse_dags_folder_into_db()
    with EmbeddedServices.for_configured_executors() as services:
        job = build_scheduler()
        for line in services.describe():
            print(line, flush=True)
        print("crossdock standalone is running; press Ctrl-C to stop", flush=True)
        job.run(handle_signals=True)
    return 0
