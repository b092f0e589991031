"""``crossdock queues``: what waits where, who consumes it, and how many workers it calls for.

The numbers are the queue monitor's (:mod:`crossdock.monitoring.queue_monitor`), read
once per print; the same ones feed the scheduler's metrics and the autoscaler. A source
that does not answer (a broker down, no worker replying, no cluster) leaves its columns
empty and is named under the table, while the scheduler-side numbers are still shown.

Idle warm pods (``[kubernetes_executor] warm_pool_size``) get one row per profile under
each Kubernetes queue's row, keyed by the first :data:`SHORT_PROFILE` characters of
the profile (``-o json`` has the whole key); without warm pods there are no such rows.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import datetime, timezone
from typing import Any

from crossdock.cli.output import print_rows

COLUMNS = ("queue", "executor", "waiting", "running", "broker", "workers", "free", "oldest_wait",
           "desired", "why")
#: Characters of a warm pod profile's key shown in the table.
SHORT_PROFILE = 8


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 120:
        return f"{value:.0f}s"
    return f"{value / 60:.0f}m" if value < 7200 else f"{value / 3600:.1f}h"


def _row(status) -> dict[str, Any]:
    workers = status.workers
    if status.executor == "KubernetesExecutor" and status.pods_pending is not None:
        workers = f"pods: {status.pods_pending} pending, {status.pods_running} running"
    return {
        "queue": status.queue, "executor": status.executor, "waiting": status.waiting,
        "running": status.running, "broker": status.broker_messages, "workers": workers,
        "free": status.free_slots, "oldest_wait": _seconds(status.oldest_wait_seconds),
        "desired": status.desired_workers, "why": status.desired_reason,
    }


def _warm_rows(status) -> list[dict[str, Any]]:
    """One row per profile of idle warm pods, shown under the queue's own row."""
    return [dict.fromkeys(COLUMNS, None) | {
        "queue": f"  warm {warm.profile[:SHORT_PROFILE]}", "why": "",
        "workers": f"warm pods: {warm.pending} pending, {warm.running} running"}
        for warm in status.warm_pods]


def _fit(rows: list[dict[str, Any]]) -> None:
    """Cut the last column so a row fits the terminal; ``-o json`` keeps the full text."""
    width = shutil.get_terminal_size((160, 24)).columns
    fixed = sum(max(len(c), *(len(str(r[c] if r[c] is not None else "")) for r in rows)) + 2
                for c in COLUMNS[:-1])
    room = max(20, width - fixed)
    for row in rows:
        if len(row["why"]) > room:
            row["why"] = row["why"][:room - 1] + "…"


def print_statuses(statuses, *, output: str, stream=None) -> None:
    stream = stream or sys.stdout
    if output == "json":
        json.dump([status.as_json() for status in statuses], stream, indent=2)
        stream.write("\n")
        return
    rows = [row for status in statuses for row in (_row(status), *_warm_rows(status))]
    if rows:
        _fit(rows)
    print_rows(rows, columns=COLUMNS, output="table", stream=stream)
    notes = []
    for status in statuses:
        notes.extend(f"{status.queue}: {error}" for error in status.errors)
    defaults = [s.queue for s in statuses if s.executor == "CeleryExecutor" and not s.configured]
    if defaults:
        notes.append(f"not in [worker_queues] queues, so on the defaults: {', '.join(defaults)}")
    unused = [s.queue for s in statuses if s.configured and not s.used_by_dags]
    if unused:
        notes.append(f"in [worker_queues] queues but no DAG has a task on it (a misspelt name?): "
                     f"{', '.join(unused)}")
    for note in dict.fromkeys(notes):
        stream.write(f"note: {note}\n")


def queues(args) -> int:
    from crossdock.database import ensure_migrated
    from crossdock.monitoring.queue_monitor import QueueMonitor

    ensure_migrated()
    monitor = QueueMonitor(interval=args.interval)
    if not args.watch:
        print_statuses(monitor.refresh(), output=args.output)
        return 0
    redraw = sys.stdout.isatty() and args.output == "table"
    try:
        while True:
            statuses = monitor.refresh()
            if redraw:
                sys.stdout.write("\x1b[H\x1b[2J")
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            if args.output == "table":
                sys.stdout.write(f"-- {stamp}\n")
            print_statuses(statuses, output=args.output)
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
