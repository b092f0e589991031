"""The scheduler's settings, read from ``[core]`` and ``[scheduler]`` once when a job starts.

One frozen object instead of ``conf`` reads scattered through the loop: a reader sees
every knob the scheduler obeys in one place, and a bad value fails when the job is
built rather than halfway through a loop step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from crossdock.configuration import conf


def _setting(section: str, key: str):
    """A field read from ``[section] key``, in the type the configuration schema declares."""
    return field(metadata={"conf": (section, key)})


@dataclass(frozen=True)
class SchedulerSettings:
    parallelism: int = _setting("core", "parallelism")
    max_active_tasks_per_dag: int = _setting("core", "max_active_tasks_per_dag")
    hostname: str = _setting("core", "hostname")
    dags_folder: str = _setting("core", "dags_folder")
    task_queued_timeout: float = _setting("scheduler", "task_queued_timeout")
    num_stuck_in_queued_retries: int = _setting("scheduler", "num_stuck_in_queued_retries")
    heartbeat_seconds: float = _setting("scheduler", "scheduler_heartbeat_sec")
    new_runs_poll_interval: float = _setting("scheduler", "new_runs_poll_interval")
    dag_dir_list_interval: float = _setting("scheduler", "dag_dir_list_interval")
    orphaned_tasks_check_interval: float = _setting("scheduler", "orphaned_tasks_check_interval")
    standby_takeover_seconds: float = _setting("scheduler", "standby_takeover_seconds")
    min_loop_sleep: float = _setting("scheduler", "min_loop_sleep")
    max_loop_sleep: float = _setting("scheduler", "max_loop_sleep")

    @classmethod
    def from_conf(cls) -> "SchedulerSettings":
        return cls(**{item.name: conf.get(*item.metadata["conf"]) for item in fields(cls)})
