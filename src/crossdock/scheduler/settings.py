"""The scheduler's settings, read from ``[core]`` and ``[scheduler]`` once when a job starts.

One frozen object instead of ``conf`` reads scattered through the loop: a reader sees
every knob the scheduler obeys in one place, and a bad value fails when the job is
built rather than halfway through a loop step.
"""

from __future__ import annotations

from dataclasses import dataclass

from crossdock.configuration import conf


@dataclass(frozen=True)
class SchedulerSettings:
    parallelism: int
    max_active_tasks_per_dag: int
    task_queued_timeout: float
    num_stuck_in_queued_retries: int
    heartbeat_seconds: float
    new_runs_poll_interval: float
    dag_dir_list_interval: float
    orphaned_tasks_check_interval: float
    standby_takeover_seconds: float
    min_loop_sleep: float
    max_loop_sleep: float
    hostname: str
    dags_folder: str

    @classmethod
    def from_conf(cls) -> "SchedulerSettings":
        return cls(
            parallelism=conf.getint("core", "parallelism"),
            max_active_tasks_per_dag=conf.getint("core", "max_active_tasks_per_dag"),
            task_queued_timeout=conf.getfloat("scheduler", "task_queued_timeout"),
            num_stuck_in_queued_retries=conf.getint("scheduler", "num_stuck_in_queued_retries"),
            heartbeat_seconds=conf.getfloat("scheduler", "scheduler_heartbeat_sec"),
            new_runs_poll_interval=conf.getfloat("scheduler", "new_runs_poll_interval"),
            dag_dir_list_interval=conf.getfloat("scheduler", "dag_dir_list_interval"),
            orphaned_tasks_check_interval=conf.getfloat("scheduler", "orphaned_tasks_check_interval"),
            standby_takeover_seconds=conf.getfloat("scheduler", "standby_takeover_seconds"),
            min_loop_sleep=conf.getfloat("scheduler", "min_loop_sleep"),
            max_loop_sleep=conf.getfloat("scheduler", "max_loop_sleep"),
            hostname=conf.getstr("core", "hostname"),
            dags_folder=conf.getstr("core", "dags_folder"),
        )
