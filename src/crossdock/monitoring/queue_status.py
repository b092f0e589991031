"""One queue's numbers at one moment, and the worker count they call for.

The formula is the one managed Airflow services scale Celery queues by:
``workers = ceil((queued + running) / max_tasks_per_worker)``, kept between the queue's
``min_workers`` and ``max_workers``. ``queued`` counts every task instance the scheduler
has for the queue that is waiting to run (ready for a slot, or handed to the executor and
not yet started); ``running`` those a worker runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from crossdock.monitoring.worker_queues import WorkerQueueSpec


def desired_workers(spec: WorkerQueueSpec, *, queued: int, running: int) -> tuple[int, str]:
    """The worker count for ``queued + running`` tasks, and a sentence that says why."""
    load = queued + running
    needed = math.ceil(load / spec.max_tasks_per_worker)
    formula = f"ceil(({queued} queued + {running} running) / {spec.max_tasks_per_worker} per worker) = {needed}"
    if needed < spec.min_workers:
        return spec.min_workers, f"{formula}, raised to min_workers {spec.min_workers}"
    if needed > spec.max_workers:
        return spec.max_workers, f"{formula}, capped at max_workers {spec.max_workers}"
    return needed, formula


@dataclass
class WorkerInfo:
    """One Celery worker consuming a queue, as it answered the last inspect broadcast."""

    hostname: str
    concurrency: int
    active: int
    reserved: int
    scheduled: int = 0
    draining: bool = False

    @property
    def free_slots(self) -> int:
        return max(0, self.concurrency - self.active - self.reserved)


@dataclass
class WarmPodCount:
    """The idle warm pods of one pod profile (unassigned; an assigned one is its try's pod)."""

    profile: str
    pending: int = 0
    running: int = 0


@dataclass
class QueueStatus:
    """What ``crossdock queues -o json`` prints for one queue (one JSON object each).

    Scheduler-side numbers (``scheduled``, ``queued``, ``running``, ``oldest_wait_seconds``)
    come from the metadata database; ``broker_messages`` from the broker and the worker
    fields from Celery's inspect replies. ``None`` means "could not be read" (the broker
    or the workers did not answer), never zero; ``errors`` says what failed. On a
    Kubernetes queue ``pods_pending``/``pods_running`` count the pods of tries (a warm
    pod once assigned included) and ``warm_pods`` the idle warm pods, so no pod is in both.
    """

    queue: str
    executor: str
    scheduled: int = 0
    queued: int = 0
    running: int = 0
    oldest_wait_seconds: float | None = None
    broker_messages: int | None = None
    workers: int | None = None
    free_slots: int | None = None
    worker_hosts: list[WorkerInfo] = field(default_factory=list)
    desired_workers: int | None = None
    desired_reason: str = ""
    configured: bool = False
    #: a parsed DAG has a task on this queue (False for a listed queue nothing uses: a typo?)
    used_by_dags: bool = True
    min_workers: int | None = None
    max_workers: int | None = None
    max_tasks_per_worker: int | None = None
    pods_pending: int | None = None
    pods_running: int | None = None
    #: idle warm pods per profile (empty when there are none, or warm pods are off)
    warm_pods: list[WarmPodCount] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        """Tasks waiting for a worker: the formula's ``queued``."""
        return self.scheduled + self.queued

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["worker_hosts"] = [dict(asdict(w), free_slots=w.free_slots) for w in self.worker_hosts]
        return data
