"""``[worker_queues]``: how many Celery workers each queue may have, and how much one runs.

A queue the config lists takes its numbers from ``queues``; a queue a DAG uses but the
config does not list gets the ``default_*`` keys, and says so (``configured`` is False),
so ``crossdock queues`` can point out a queue that runs on defaults nobody chose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crossdock.configuration import ConfigError, conf

#: Keys a queue's entry in ``[worker_queues] queues`` may have.
QUEUE_KEYS = frozenset({"min_workers", "max_workers", "max_tasks_per_worker", "resources"})


@dataclass(frozen=True)
class WorkerQueueSpec:
    """The bounds one queue's workers are scaled within.

    ``resources`` is passed as it is to the Kubernetes driver and the deploy manifests
    (a container's ``resources`` object); the local driver ignores it.
    """

    name: str
    min_workers: int
    max_workers: int
    max_tasks_per_worker: int
    resources: dict[str, Any] = field(default_factory=dict)
    configured: bool = True


def _whole_number(queue: str, key: str, value: Any, *, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"[worker_queues] queue {queue!r}: {key} must be a whole number, got {value!r}")
    if value < least:
        raise ConfigError(f"[worker_queues] queue {queue!r}: {key} must be at least {least}, got {value}")
    return value


def _checked(spec: WorkerQueueSpec) -> WorkerQueueSpec:
    if spec.min_workers > spec.max_workers:
        raise ConfigError(f"[worker_queues] queue {spec.name!r}: min_workers ({spec.min_workers}) is more "
                          f"than max_workers ({spec.max_workers})")
    return spec


class WorkerQueues:
    """Every queue's :class:`WorkerQueueSpec`, read from the config once and checked whole."""

    def __init__(self, listed: dict[str, WorkerQueueSpec], defaults: WorkerQueueSpec) -> None:
        self.listed = listed
        self.defaults = defaults

    @classmethod
    def from_config(cls, *, tasks_per_worker: int | None = None) -> "WorkerQueues":
        """Read ``[worker_queues]``; a bad entry fails with the queue and key it concerns.

        :param tasks_per_worker: what ``default_max_tasks_per_worker = 0`` stands for, when
            the workers are not sized by ``[celery] worker_concurrency`` (the local driver's
            workers run fewer processes on a small machine).
        """
        concurrency = tasks_per_worker or conf.getint("celery", "worker_concurrency", fallback=16)
        default_tasks = conf.getint("worker_queues", "default_max_tasks_per_worker") or concurrency
        defaults = _checked(WorkerQueueSpec(
            name="*",
            min_workers=_whole_number("*", "default_min_workers",
                                      conf.getint("worker_queues", "default_min_workers"), least=0),
            max_workers=_whole_number("*", "default_max_workers",
                                      conf.getint("worker_queues", "default_max_workers"), least=0),
            max_tasks_per_worker=_whole_number("*", "default_max_tasks_per_worker", default_tasks, least=1),
            configured=False,
        ))
        listed: dict[str, WorkerQueueSpec] = {}
        for name, entry in conf.getjson("worker_queues", "queues").items():
            if not isinstance(entry, dict):
                raise ConfigError(f"[worker_queues] queue {name!r} must be a JSON object, got {entry!r}")
            unknown = sorted(set(entry) - QUEUE_KEYS)
            if unknown:
                raise ConfigError(f"[worker_queues] queue {name!r}: unknown key(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(sorted(QUEUE_KEYS))}")
            resources = entry.get("resources", {})
            if not isinstance(resources, dict):
                raise ConfigError(f"[worker_queues] queue {name!r}: resources must be a JSON object")
            listed[name] = _checked(WorkerQueueSpec(
                name=name,
                min_workers=_whole_number(name, "min_workers", entry.get("min_workers", defaults.min_workers),
                                          least=0),
                max_workers=_whole_number(name, "max_workers", entry.get("max_workers", defaults.max_workers),
                                          least=0),
                max_tasks_per_worker=_whole_number(
                    name, "max_tasks_per_worker",
                    entry.get("max_tasks_per_worker", defaults.max_tasks_per_worker), least=1),
                resources=resources,
            ))
        return cls(listed, defaults)

    def spec_for(self, queue: str) -> WorkerQueueSpec:
        """The queue's own spec, or the defaults under its name (``configured`` False)."""
        if queue in self.listed:
            return self.listed[queue]
        d = self.defaults
        return WorkerQueueSpec(queue, d.min_workers, d.max_workers, d.max_tasks_per_worker, {}, False)

    def names(self) -> list[str]:
        return sorted(self.listed)
