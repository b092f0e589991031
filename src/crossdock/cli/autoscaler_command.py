"""``crossdock celery autoscaler``: size each queue's worker Deployment on Kubernetes, drain-first.

The queue monitor reads every queue's numbers each ``[worker_queues] interval``; the
autoscaler turns them into a worker count by the formula; the *kubernetes* pool
(:mod:`crossdock.monitoring.kubernetes_workers`) sets the queue's Deployment to it,
draining idle workers first when it goes down. It runs until Ctrl-C (or SIGTERM, as a
pod), one log line per change. ``--once`` refreshes the numbers, decides once, prints
the decisions and exits — for a test, a look, or a cron job.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from dataclasses import asdict
from typing import Any

from crossdock.cli.output import print_rows

COLUMNS = ("queue", "desired", "actual", "action", "reason", "draining")


def print_decisions(decisions: list, *, output: str, stream=None) -> None:
    stream = stream or sys.stdout
    if output == "json":
        json.dump([asdict(decision) for decision in decisions], stream, indent=2)
        stream.write("\n")
        return
    rows = [dict(asdict(decision), draining=", ".join(decision.draining)) for decision in decisions]
    print_rows(rows, columns=COLUMNS, stream=stream)


def autoscaler(args: Any) -> int:
    from crossdock.configuration import conf
    from crossdock.monitoring.autoscaler import Autoscaler
    from crossdock.monitoring.kubernetes_workers import KubernetesWorkerPool
    from crossdock.monitoring.queue_monitor import QueueMonitor

    cooldown = args.cooldown
    if cooldown is None:
        # One run has no history to cool down from: a cron job's period is its cool-down.
        cooldown = 0.0 if args.once else conf.getfloat("worker_queues", "cooldown")
    monitor = QueueMonitor(interval=args.interval)
    pool = KubernetesWorkerPool(queues=monitor.worker_queues.names())
    scaler = Autoscaler(monitor=monitor, pool=pool, cooldown=cooldown)
    try:
        if args.once:
            print_decisions(scaler.decide(monitor.refresh()), output=args.output)
            return 0
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        print(f"autoscaling {', '.join(monitor.worker_queues.names()) or 'the queues DAGs use'} in namespace "
              f"{pool.namespace} every {monitor.interval:g} s (Ctrl-C stops)", flush=True)
        scaler.run_forever(stop)
        return 0
    finally:
        pool.close()
