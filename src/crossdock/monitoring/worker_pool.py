"""What the autoscaler needs from the place workers run: the contract of its drivers.

Two drivers implement it: the *local* one starts and stops ``crossdock celery worker -q
QUEUE`` processes on this machine (``crossdock standalone``), the *kubernetes* one sets
``spec.replicas`` of one Deployment per queue (``crossdock celery autoscaler``). The
autoscaler decides how many workers a queue should have; the driver decides nothing but
how to get there, always drain-first when going down: a retired worker first stops
consuming the queue (Celery ``cancel_consumer``), finishes what it runs, then exits. An
idle worker is always retired before a busy one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from crossdock.monitoring.queue_status import QueueStatus


@dataclass
class ScalingDecision:
    """One queue's last decision: what the formula asked, what there was, what was done."""

    queue: str
    desired: int
    actual: int
    action: str  # "none" | "up" | "down" | "cooldown" | "error"
    reason: str
    at: float  # time.time() of the decision
    draining: list[str] = field(default_factory=list)


class WorkerPool(Protocol):
    """Where a queue's workers run. Every method is called from the autoscaler's thread."""

    #: "local" or "kubernetes": shown in decision log lines and metrics.
    driver: str

    def actual_workers(self, queue: str) -> int:
        """Workers of ``queue`` that count toward its size now (draining ones do not)."""

    def draining_workers(self, queue: str) -> list[str]:
        """Names of the queue's workers that stopped consuming and still finish their work."""

    def scale_up(self, queue: str, count: int, status: QueueStatus) -> None:
        """Start ``count`` more workers consuming ``queue``."""

    def scale_down(self, queue: str, count: int, status: QueueStatus) -> list[str]:
        """Retire ``count`` workers of ``queue`` drain-first (idle ones first); their names."""

    def tick(self) -> None:
        """Advance drains: let drained workers exit, report those past ``drain_grace``, replace dead ones."""

    def close(self) -> None:
        """Stop every worker this pool started (a warm shutdown: running tasks finish)."""
