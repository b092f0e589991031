"""Test support for the scheduler: a scripted executor and DAG-folder helpers.

``ScriptedExecutor`` is a real ``BaseExecutor`` subclass whose "workers" are a script:
each task try ends in the state the test chose, after a chosen number of heartbeats.
It lets the scheduler's own rules (dependencies, retries, limits, priorities, stuck
tasks, adoption) be checked exactly, without process timing in the way. The real
executors are exercised end to end in the e2e and integration tests.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path

from crossdock.executors.base_executor import BaseExecutor
from crossdock.state import TaskInstanceState as S

HANG = "hang"


class ScriptedExecutor(BaseExecutor):
    """Finishes every try as ``outcomes[task_id][try_number - 1]`` says (default: success).

    :param beats: heartbeats a try stays running before it ends.
    :param adopt: whether ``try_adopt_task_instances`` adopts what it is given.
    """

    def __init__(self, *, outcomes=None, beats: int = 1, parallelism: int = 32, adopt: bool = False):
        super().__init__(parallelism=parallelism)
        self.outcomes = outcomes or {}
        self.beats = beats
        self.adopt = adopt
        self.started: list = []  # keys in the order execute_async saw them
        self.commands: dict = {}
        self.revoked: list = []
        self.max_running = 0
        self._age: dict = defaultdict(int)
        self.ended = False

    def execute_async(self, key, command, queue=None, executor_config=None):
        self.validate_command(command)
        self.started.append(key)
        self.commands[key] = (command, queue)

    def sync(self):
        self.max_running = max(self.max_running, len(self.running))
        for key in sorted(self.running):
            if key in self.event_buffer:
                continue
            self._age[key] += 1
            if self._age[key] == 1:
                self.running_state(key, {"hostname": "scripted-host", "pid": 4242})
            plan = self.outcomes.get(key.task_id, [])
            outcome = plan[key.try_number - 1] if key.try_number - 1 < len(plan) else S.SUCCESS
            if outcome == HANG or self._age[key] <= self.beats:
                continue
            if outcome == S.SUCCESS:
                self.success(key)
            else:
                self.fail(key, f"scripted failure of {key.task_id} try {key.try_number}")

    def revoke_task(self, *, ti):
        self.revoked.append(ti.key)
        self.running.discard(ti.key)
        self.queued_tasks.pop(ti.key, None)

    def try_adopt_task_instances(self, tis):
        if not self.adopt:
            return tis
        for ti in tis:
            self.running.add(ti.key)
        return []

    def end(self):
        self.ended = True

    def terminate(self):
        self.ended = True


def write_dag(folder: Path, name: str, body: str) -> Path:
    """Write a DAG file; ``body`` is dedented and gets the crossdock imports prepended."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    header = "from datetime import datetime, timedelta\nfrom crossdock import DAG, BashOperator, PythonOperator, task\n"
    path.write_text(header + textwrap.dedent(body))
    return path
