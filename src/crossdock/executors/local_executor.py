"""LocalExecutor: run each task as a process on the scheduler's machine.

At :meth:`LocalExecutor.start` it starts one warm "zygote" process
(:mod:`crossdock.runner.zygote`); each task command is a fork of that zygote, so a
task costs a fork rather than a new interpreter (design principle 5). The zygote is a
new interpreter, not a fork of the scheduler: its tries then inherit none of the
scheduler's memory (its database engine and URL, its threads, fds and at-fork hooks),
only what a try needs. The zygote
reports ``started`` / ``finished`` over a pipe; :meth:`sync` turns those into events
without blocking, and :meth:`wait_for_events` lets an idle scheduler sleep until one
arrives, so a finished task wakes it at once.

Nothing is adopted after a scheduler restart: the zygote and its tasks die with the
scheduler that started them (the zygote kills them when its connection closes).
"""

from __future__ import annotations

import select
import signal
import time
from typing import TYPE_CHECKING, Any, Sequence

from crossdock.configuration import conf
from crossdock.executors.base_executor import REVOKED_REASON, BaseExecutor, CommandType
from crossdock.executors.task_event import TaskEvent
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.interrupt import KILL_GRACE_SECONDS
from crossdock.runner.task_log import task_log_path
from crossdock.runner.zygote import STOP_TIMEOUT_SECONDS, ZygoteHandle, spawn_zygote
from crossdock.processes import group_alive, signal_group
from crossdock.state import TaskInstanceState

if TYPE_CHECKING:
    from crossdock.models.taskinstance import TaskInstance

#: The failure reason of every task that was running when the zygote died.
ZYGOTE_DIED_REASON = "local executor process died"
#: The failure reason of a task still running when :meth:`LocalExecutor.terminate` gave up on it.
TERMINATED_REASON = "local executor terminated"


class LocalExecutor(BaseExecutor):
    """Runs tasks as local processes, at most ``parallelism`` at once.

    :param parallelism: most tasks running at once; default ``[core] parallelism``
        (0 means no limit).
    :param fork: run each task in a fork of the warm zygote (True) or in a new Python
        interpreter (False); default ``[local_executor] fork``.
    :param kill_grace: seconds between SIGTERM and SIGKILL when a task is revoked or
        the executor terminates.
    """

    is_local = True
    supports_pickling = False
    is_single_threaded = False
    is_production = False
    supports_ad_hoc_ti_run = True
    serve_logs = True

    def __init__(self, parallelism: int | None = None, *, fork: bool | None = None,
                 kill_grace: float = KILL_GRACE_SECONDS):
        if parallelism is None:
            parallelism = conf.getint("core", "parallelism")
        super().__init__(parallelism=parallelism)
        self.use_fork = conf.getboolean("local_executor", "fork") if fork is None else fork
        self.kill_grace = kill_grace
        self._zygote: ZygoteHandle | None = None
        #: Keys handed to the zygote and not finished yet → pid (None until "started").
        self._in_flight: dict[TaskInstanceKey, int | None] = {}
        #: Keys already failed by revoke_task whose "finished" message is still to come.
        self._revoked: set[TaskInstanceKey] = set()
        #: Commands for keys whose previous (revoked) process is still being stopped; sent
        #: when it has gone, so one try never runs twice at once.
        self._deferred: dict[TaskInstanceKey, list[str]] = {}
        #: Process groups of a dead zygote's tasks to SIGKILL at a deadline.
        self._orphan_kills: dict[int, float] = {}

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Start the zygote (once; calling start again is harmless)."""
        if self._zygote is None:
            self._zygote = spawn_zygote(use_fork=self.use_fork)
            self.log.debug("started local executor process %s (fork=%s)", self._zygote.pid, self.use_fork)

    @property
    def zygote_pid(self) -> int | None:
        """Pid of the process that forks the tasks (None before :meth:`start`)."""
        return self._zygote.pid if self._zygote is not None else None

    def task_pid(self, key: TaskInstanceKey) -> int | None:
        """Pid of a running task's process (its process group id too), once it started."""
        return self._in_flight.get(key)

    def end(self) -> None:
        """Wait for every running task to finish, then stop the zygote."""
        while self._in_flight and self._zygote is not None:
            self.wait_for_events(1.0)
            self._drain(restart=False)
        self._stop_zygote()
        self._kill_orphans(final=True)

    def terminate(self) -> None:
        """Kill every task's process group (SIGTERM, SIGKILL after the grace) and the zygote."""
        zygote = self._zygote
        if zygote is not None:
            try:
                zygote.send(("terminate", self.kill_grace))
            except OSError:
                pass
            deadline = time.monotonic() + self.kill_grace + STOP_TIMEOUT_SECONDS
            while time.monotonic() < deadline and not zygote.reap():
                self.wait_for_events(min(0.5, max(0.0, deadline - time.monotonic())))
                if not self._drain(restart=False):
                    break
            self._drain(restart=False)
            if self._zygote is not None:
                self._zygote.kill()
                self._zygote.close()
                self._zygote = None
        for key, pid in list(self._in_flight.items()):
            if pid:
                signal_group(pid, signal.SIGKILL)
            self._finish_failed(key, TERMINATED_REASON)
        self._in_flight.clear()
        for key in self._deferred:
            self.fail(key, TERMINATED_REASON)
        self._deferred.clear()
        self._kill_orphans(final=True)

    def _stop_zygote(self) -> None:
        zygote, self._zygote = self._zygote, None
        if zygote is None:
            return
        try:
            zygote.send(("stop",))
        except OSError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while not zygote.reap() and time.monotonic() < deadline:
            select.select([zygote.fileno()], [], [], max(0.0, min(0.2, deadline - time.monotonic())))
            try:
                zygote.receive_ready()
            except (EOFError, OSError):
                zygote.reap(block=True)
                break
        zygote.kill()
        zygote.close()

    # -- running -----------------------------------------------------------------------
    def execute_async(self, key: TaskInstanceKey, command: CommandType,
                      queue: str | None = None, executor_config: Any | None = None) -> None:
        """Hand ``command`` to the zygote; a command the policy refuses fails at once, unrun.

        The zygote forks the task runner, so it runs task commands only: another command
        (allowed with ``[core] task_commands_only`` off) fails there, with the refusal.
        """
        if self.refuse_command(key, command):
            return
        if key in self._in_flight:
            self._deferred[key] = list(command)
            return
        self._send_run(key, list(command))

    def _send_run(self, key: TaskInstanceKey, command: list[str]) -> None:
        self.start()
        message = ("run", key, command)
        try:
            self._zygote.send(message)
        except OSError:
            self._on_zygote_death(restart=True)
            self._zygote.send(message)
        self._in_flight[key] = None

    def sync(self) -> None:
        """Turn what the zygote reported into events; never blocks."""
        self._drain(restart=True)
        self._kill_orphans()

    def _drain(self, *, restart: bool) -> bool:
        """Read every waiting message; False if the zygote turned out to be dead."""
        if self._zygote is None:
            return False
        try:
            messages = self._zygote.receive_ready()
        except (EOFError, OSError):
            messages, dead = [], True
        else:
            dead = False
        for message in messages:
            self._on_message(message)
        if dead:
            self._on_zygote_death(restart=restart)
            return False
        return True

    def _on_message(self, message: tuple) -> None:
        kind, key = message[0], message[1]
        if kind == "started":
            _kind, key, pid, hostname = message
            if key in self._in_flight:
                self._in_flight[key] = pid
            if key not in self._revoked:
                # Airflow's view has always shown "host:pid" for a local try.
                self.report_event(key, TaskEvent(TaskInstanceState.RUNNING, hostname=hostname, pid=pid,
                                                 info=f"{hostname}:{pid}"))
        elif kind == "finished":
            _kind, key, exit_code, reason, duration, values = message
            self._in_flight.pop(key, None)
            if key in self._revoked:
                self._revoked.discard(key)
                if key in self._deferred:
                    self._send_run(key, self._deferred.pop(key))
                return
            if exit_code == 0:
                self.log.debug("task %s succeeded in %.3fs", key, duration)
                self.report_event(key, TaskEvent(TaskInstanceState.SUCCESS, result=values))
            else:
                self.log.info("task %s failed (exit code %s): %s", key, exit_code, reason)
                self.fail(key, reason or f"task process exited with code {exit_code}")

    def _finish_failed(self, key: TaskInstanceKey, reason: str) -> None:
        if key in self._revoked:
            self._revoked.discard(key)
        else:
            self.fail(key, reason)

    def _on_zygote_death(self, *, restart: bool) -> None:
        """Fail what was running, stop its orphans, and (for a running scheduler) start anew."""
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            if restart or self._in_flight:
                self.log.error("local executor process %s died; failing %d running task(s)",
                               zygote.pid, len(self._in_flight))
            zygote.kill()
            zygote.close()
        deadline = time.monotonic() + self.kill_grace
        for key, pid in list(self._in_flight.items()):
            if pid:
                # The kernel already sent SIGTERM (die-with-parent); make sure, then SIGKILL later.
                signal_group(pid, signal.SIGTERM)
                self._orphan_kills[pid] = deadline
            self._finish_failed(key, ZYGOTE_DIED_REASON)
        self._in_flight.clear()
        self._revoked.clear()
        deferred, self._deferred = self._deferred, {}
        if restart:
            self.start()
            for key, command in deferred.items():
                self._send_run(key, command)
        else:
            for key in deferred:
                self.fail(key, ZYGOTE_DIED_REASON)

    def _kill_orphans(self, *, final: bool = False) -> None:
        """SIGKILL the groups of a dead zygote's tasks once their grace has passed."""
        if not self._orphan_kills:
            return
        if final:
            while self._orphan_kills and any(group_alive(pid) for pid in self._orphan_kills):
                if min(self._orphan_kills.values()) <= time.monotonic():
                    break
                time.sleep(0.05)
        now = time.monotonic()
        for pid, deadline in list(self._orphan_kills.items()):
            if not group_alive(pid):
                del self._orphan_kills[pid]
            elif final or deadline <= now:
                signal_group(pid, signal.SIGKILL)
                del self._orphan_kills[pid]

    def wait_for_events(self, timeout: float) -> None:
        """Sleep until the zygote reports something or ``timeout`` seconds pass."""
        if self._zygote is None:
            time.sleep(max(0.0, timeout))
            return
        try:
            select.select([self._zygote.fileno()], [], [], max(0.0, timeout))
        except (OSError, ValueError):
            pass

    # -- control -----------------------------------------------------------------------
    def revoke_task(self, *, ti: "TaskInstance") -> None:
        """Kill a task's process group (SIGTERM, SIGKILL after the grace) and fail it now."""
        key = ti.key
        self.queued_tasks.pop(key, None)
        self._deferred.pop(key, None)
        if key in self._in_flight and self._zygote is not None:
            try:
                self._zygote.send(("kill", key, self.kill_grace))
            except OSError:
                pass
            self._revoked.add(key)
        self.fail(key, REVOKED_REASON)

    def cleanup_stuck_queued_tasks(self, tis: list["TaskInstance"]) -> list[str]:
        """Drop tasks the scheduler thinks are stuck in queued; one readable line per task.

        Locally a task leaves ``queued`` within a heartbeat, so this only happens when the
        scheduler lost track of one; whatever is left of it here is stopped.
        """
        lines = []
        for ti in tis:
            key = ti.key
            if key in self.queued_tasks:
                del self.queued_tasks[key]
                lines.append(f"{ti!r} was still waiting for a free slot; removed from the local queue")
            elif key in self._in_flight:
                self.revoke_task(ti=ti)
                lines.append(f"{ti!r} was running locally; its process was stopped")
            else:
                lines.append(f"{ti!r} is not known to the local executor")
        return lines

    def try_adopt_task_instances(self, tis: Sequence["TaskInstance"]) -> Sequence["TaskInstance"]:
        """Adopt nothing: a dead scheduler's local task processes died with it."""
        return list(tis)

    def get_task_log(self, ti: "TaskInstance", try_number: int) -> tuple[list[str], list[str]]:
        """The try's log file, read from this machine's log folder."""
        path = task_log_path(dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id,
                             try_number=try_number, map_index=ti.map_index)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return [f"no log file at {path}"], []
        except OSError as exc:
            return [f"cannot read {path}: {exc.strerror or exc}"], []
        return [f"reading {path}"], text.splitlines()

    def debug_dump(self) -> None:
        super().debug_dump()
        self.log.info("  local executor process: %s (fork=%s)", self.zygote_pid, self.use_fork)
        for key, pid in self._in_flight.items():
            self.log.info("  process: %s -> pid %s", key, pid)

