"""The executor contract the scheduler talks to; the names and meanings are Airflow's.

The executor lives inside the scheduler process. The scheduler hands it task instances
(``queue_command`` / ``queue_task_instance``), calls ``heartbeat()`` every loop, and reads
what happened back: as typed :class:`~crossdock.executors.task_event.TaskEvent` objects
with :meth:`BaseExecutor.pop_task_events`, or as Airflow's ``(state, info)`` pairs with
``get_event_buffer()`` (both pop the same buffer). Subclasses implement ``execute_async``
(start one command, after :meth:`BaseExecutor.refuse_command` applied the one command
policy) and ``sync`` (learn what finished); everything else has a working default here.
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional, Sequence

from crossdock.executors.event_buffer import EventBuffer
from crossdock.executors.still_running import StillRunningAttempts
from crossdock.executors.task_event import EventBufferValueType, TaskEvent
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import (
    TASK_COMMAND_PREFIX,
    InvalidCommandError,
    UsageError,
    check_command_allowed,
    parse_task_command,
    task_run_command,
)
from crossdock.state import TaskInstanceState

if TYPE_CHECKING:
    from crossdock.models.taskinstance import TaskInstance

CommandType = Sequence[str]
#: (command, priority, queue, task instance)
QueuedTaskInstanceType = tuple[CommandType, int, Optional[str], "TaskInstance"]
PARALLELISM: int = 32
#: The failure reason of a try stopped by ``revoke_task`` (executors that report one).
REVOKED_REASON = "revoked"


class BaseExecutor:
    """Base class of every executor.

    :param parallelism: most task instances this executor runs at once; 0 means no limit.
    """

    supports_ad_hoc_ti_run: bool = False
    supports_pickling: bool = True
    supports_sentry: bool = False
    is_local: bool = False
    is_single_threaded: bool = False
    is_production: bool = True
    change_sensor_mode_to_reschedule: bool = False
    serve_logs: bool = False
    callback_sink = None

    #: The name the executor is configured by (short alias or dotted path), set by the loader.
    name: str | None = None
    #: Attempts to hand a try to its engine that failed (a broker publish, a pod creation).
    publish_failures: int = 0

    def __init__(self, parallelism: int = PARALLELISM):
        self.parallelism: int = parallelism
        self.queued_tasks: dict[TaskInstanceKey, QueuedTaskInstanceType] = {}
        self.running: set[TaskInstanceKey] = set()
        self.event_buffer = EventBuffer()
        #: Queued keys held back because the same key is still running (see ``still_running``).
        self.attempts: dict[TaskInstanceKey, StillRunningAttempts] = defaultdict(StillRunningAttempts)
        self._job_id: int | str | None = None
        self.log = logging.getLogger(f"crossdock.executors.{type(self).__name__}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(parallelism={self.parallelism})"

    @property
    def event_buffer(self) -> EventBuffer:
        """Unread events by key; reads and writes Airflow's ``(state, info)`` pairs."""
        return self._event_buffer

    @event_buffer.setter
    def event_buffer(self, value: Any) -> None:
        self._event_buffer = value if isinstance(value, EventBuffer) else EventBuffer(value)

    # -- identity ------------------------------------------------------------------
    @property
    def job_id(self) -> int | str | None:
        """The id of the scheduler job this executor works for (labels its pods, etc.)."""
        return self._job_id

    @job_id.setter
    def job_id(self, value: int | str | None) -> None:
        self._job_id = value
        for child in self._children():
            child.job_id = value

    def _children(self) -> tuple["BaseExecutor", ...]:
        """The executors this one hands work to (a hybrid's); they work for the same job."""
        return ()

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        """Set up whatever the executor needs; called once by the scheduler."""

    def end(self) -> None:
        """Wait for running tasks to finish, then release resources."""
        raise NotImplementedError

    def terminate(self) -> None:
        """Stop at once, killing tasks in flight."""
        raise NotImplementedError

    # -- queueing --------------------------------------------------------------------
    def queue_command(self, task_instance: "TaskInstance", command: CommandType,
                      priority: int = 1, queue: str | None = None) -> None:
        """Hold a command until a heartbeat has a slot for it; a key already queued is ignored."""
        if task_instance.key not in self.queued_tasks:
            self.log.debug("Adding to queue: %s", command)
            self.queued_tasks[task_instance.key] = (command, priority, queue, task_instance)
        else:
            self.log.error("could not queue task %s: it is already queued", task_instance.key)

    def queue_task_instance(self, task_instance: "TaskInstance", **kwargs: Any) -> None:
        """Queue the task command of a task instance at its own priority and queue."""
        command = task_command_of(task_instance, subdir=kwargs.get("cfg_path"))
        self.queue_command(task_instance, command,
                           priority=task_instance.priority_weight or 1,
                           queue=task_instance.queue)

    def has_task(self, task_instance: "TaskInstance") -> bool:
        """Whether this executor already holds the task instance (queued or running)."""
        return task_instance.key in self.queued_tasks or task_instance.key in self.running

    # -- the heartbeat ---------------------------------------------------------------
    def heartbeat(self) -> None:
        """Start as many queued commands as there are open slots, then sync states."""
        if not self.parallelism:
            open_slots = len(self.queued_tasks)
        else:
            open_slots = self.parallelism - len(self.running)
        self.log.debug("%s running, %s queued, %s open slots",
                       len(self.running), len(self.queued_tasks), open_slots)
        self.trigger_tasks(open_slots)
        self.sync()

    def order_queued_tasks_by_priority(self) -> list[tuple[TaskInstanceKey, QueuedTaskInstanceType]]:
        """Queued tasks, highest priority first; ties keep the order they were queued in."""
        return sorted(self.queued_tasks.items(), key=lambda item: item[1][1], reverse=True)

    def trigger_tasks(self, open_slots: int) -> None:
        """Hand up to ``open_slots`` queued commands to :meth:`_process_tasks`, by priority.

        A command whose key is still running waits (it would run the try twice); after
        a few heartbeats (:mod:`crossdock.executors.still_running`) it is dropped.
        """
        if open_slots <= 0 or not self.queued_tasks:
            return
        batch = []
        for key, (command, _priority, queue, ti) in self.order_queued_tasks_by_priority():
            if len(batch) >= open_slots:
                break
            if key in self.running:
                attempts = self.attempts[key]
                if attempts.can_try_again():
                    self.log.info("task %s is queued but still running; attempt %d, it will be sent later",
                                  key, attempts.total_tries)
                    continue
                self.log.error("could not queue task %s: still running after %d attempts; the running try "
                               "reports its outcome", key, attempts.total_tries)
                del self.attempts[key]
                del self.queued_tasks[key]
                continue
            self.attempts.pop(key, None)
            batch.append((key, command, queue, getattr(ti, "executor_config", None)))
        if batch:
            self._process_tasks(batch)

    def _process_tasks(self, task_tuples: list[tuple[TaskInstanceKey, CommandType, str | None, Any]]) -> None:
        """Send a batch of commands taken off the queue; executors that batch sends override this."""
        for key, command, queue, executor_config in task_tuples:
            del self.queued_tasks[key]
            self._start_task(key, command, queue, executor_config)

    def _start_task(self, key: TaskInstanceKey, command: CommandType, queue: str | None,
                    executor_config: Any) -> None:
        """:meth:`execute_async` with the ``running`` bookkeeping around it.

        The key counts as running before the command is handed over, so a try that
        ends during the hand-over (a refused command fails at once) leaves no slot taken.
        """
        self.running.add(key)
        try:
            self.execute_async(key=key, command=command, queue=queue, executor_config=executor_config)
        except BaseException:
            self.running.discard(key)
            raise

    def refuse_command(self, key: TaskInstanceKey, command: CommandType) -> bool:
        """Apply the command policy at send time; a refused command fails its try, unrun.

        Every executor calls this before it sends a command. True when it was refused
        (the FAILED event carries the refusal as its reason).
        """
        try:
            self.validate_command(command)
        except InvalidCommandError as exc:
            self.log.error("task %s: %s", key, exc)
            self.report_event(key, TaskEvent(TaskInstanceState.FAILED, reason=str(exc)))
            return True
        return False

    # -- abstract ----------------------------------------------------------------------
    def execute_async(self, key: TaskInstanceKey, command: CommandType,
                      queue: str | None = None, executor_config: Any | None = None) -> None:
        """Start running ``command`` for ``key``; must not block on the task."""
        raise NotImplementedError

    def sync(self) -> None:
        """Learn what finished and report it through :meth:`change_state`."""
        raise NotImplementedError

    # -- state reporting -----------------------------------------------------------
    def change_state(self, key: TaskInstanceKey, state: str, info: Any = None,
                     remove_running: bool = True) -> None:
        """Record an event for the scheduler, by default taking the key out of ``running``.

        ``info`` is Airflow's (an external id, a host, a reason) or a :class:`TaskEvent`.
        """
        if remove_running:
            try:
                self.running.remove(key)
            except KeyError:
                self.log.debug("could not find key %s in running", key)
        self.event_buffer[key] = TaskEvent.from_info(state, info)

    def report_event(self, key: TaskInstanceKey, event: TaskEvent) -> None:
        """Record a typed event; a final one takes the key out of ``running``, queued/running do not."""
        self.change_state(key, event.state, event, remove_running=event.is_final)

    def fail(self, key: TaskInstanceKey, info: Any = None) -> None:
        self.change_state(key, TaskInstanceState.FAILED, info)

    def success(self, key: TaskInstanceKey, info: Any = None) -> None:
        self.change_state(key, TaskInstanceState.SUCCESS, info)

    def queued(self, key: TaskInstanceKey, info: Any = None) -> None:
        """Airflow's: record QUEUED and take the key out of ``running``.

        Executors that report an external id for a try they keep running use
        :meth:`report_event`, which leaves ``running`` alone for QUEUED.
        """
        self.change_state(key, TaskInstanceState.QUEUED, info)

    def running_state(self, key: TaskInstanceKey, info: Any = None) -> None:
        self.change_state(key, TaskInstanceState.RUNNING, info, remove_running=False)

    def get_event_buffer(self, dag_ids: list[str] | None = None) -> dict[TaskInstanceKey, EventBufferValueType]:
        """Pop and return the events of ``dag_ids`` (all events when None) as ``(state, info)``."""
        return self.event_buffer.pop_pairs(dag_ids)

    def pop_task_events(self, dag_ids: list[str] | None = None) -> dict[TaskInstanceKey, TaskEvent]:
        """Pop and return the events of ``dag_ids`` (all events when None), typed.

        The same events :meth:`get_event_buffer` returns; whichever is called takes them.
        """
        return self.event_buffer.pop_events(dag_ids)

    # -- capacity --------------------------------------------------------------------
    @property
    def slots_available(self) -> int:
        """Commands this executor can still accept (queued ones count as taken)."""
        if self.parallelism:
            return self.parallelism - len(self.running) - len(self.queued_tasks)
        return sys.maxsize

    @property
    def slots_occupied(self) -> int:
        return len(self.running) + len(self.queued_tasks)

    # -- recovery and control -------------------------------------------------------
    def try_adopt_task_instances(self, tis: Sequence["TaskInstance"]) -> Sequence["TaskInstance"]:
        """Take over task instances of a dead scheduler; return those not adopted (here: all)."""
        return tis

    def cleanup_stuck_queued_tasks(self, tis: list["TaskInstance"]) -> list[str]:
        """Give up on tasks stuck in queued; return a readable line per task handled."""
        raise NotImplementedError

    def revoke_task(self, *, ti: "TaskInstance") -> None:
        """Stop a queued or running task instance and forget it."""
        raise NotImplementedError

    def get_task_log(self, ti: "TaskInstance", try_number: int) -> tuple[list[str], list[str]]:
        """(messages about where the log came from, log lines) for one try."""
        return [], []

    def send_callback(self, request: Any) -> None:
        if not self.callback_sink:
            raise ValueError("Callback sink is not ready.")
        self.callback_sink.send(request)

    @staticmethod
    def get_cli_commands() -> list:
        """CLI command groups this executor adds to ``crossdock`` (see crossdock.cli_definition)."""
        return []

    @staticmethod
    def validate_command(command: CommandType) -> None:
        """The one command policy: raise :class:`InvalidCommandError` for what may not run.

        A ``crossdock tasks run`` command whose DAG file is in the DAGs folder always may;
        any other argv list only with ``[core] task_commands_only`` off.
        """
        check_command_allowed(command)

    @staticmethod
    def validate_crossdock_tasks_run_command(command: CommandType) -> tuple[str | None, str | None]:
        """``(dag_id, task_id)`` of a ``crossdock tasks run`` command (Airflow's
        ``validate_airflow_tasks_run_command``).

        Raises :class:`InvalidCommandError` (a ``ValueError``) for any other command and
        for arguments that do not parse; ``(None, None)`` for a bare ``crossdock tasks run``.
        """
        if isinstance(command, (list, tuple)) and tuple(command) == TASK_COMMAND_PREFIX:
            return None, None
        try:
            parsed = parse_task_command(command)
        except UsageError as exc:
            raise InvalidCommandError(f"{list(command)!r} is not a task try: {exc}") from None
        return parsed.dag_id, parsed.task_id

    def debug_dump(self) -> None:
        """Log what the executor holds, for a user chasing a stuck task."""
        self.log.info("executor %r: %d queued, %d running, %d events", self,
                      len(self.queued_tasks), len(self.running), len(self.event_buffer))
        for key in self.queued_tasks:
            self.log.info("  queued: %s", key)
        for key in sorted(self.running):
            self.log.info("  running: %s", key)
        for key, event in self.event_buffer.items():
            self.log.info("  event: %s -> %s", key, event)

    # -- non-contract helpers --------------------------------------------------------
    def new_external_id(self, ti: "TaskInstance") -> str | None:
        """A name for the try chosen before it is sent, where the engine lets the sender choose.

        The scheduler records it before the executor sends the try, so a scheduler that
        takes over after a crash can adopt a try sent just before it. None: the executor
        reports its own id once the try exists (a pod name, a pid).
        """
        return None

    def executor_name_for(self, ti: "TaskInstance") -> str:
        """The name recorded on a task instance this executor runs (a hybrid names its child)."""
        return self.name or type(self).__name__

    def wait_for_events(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds or until an event may be ready (scheduler idle wait).

        Executors with a pipe or socket override this to wake the scheduler the moment a
        task ends, which is what keeps a chain link in milliseconds.
        """
        import time

        time.sleep(timeout)


def task_command_of(task_instance: Any, *, subdir: str | None = None) -> list[str]:
    """The task command of a task instance: its key, its DAG file, its run's logical date if known.

    ``subdir`` is used when the instance does not name its DAG file (``dag_fileloc``).
    """
    return task_run_command(task_instance.key, subdir=getattr(task_instance, "dag_fileloc", None) or subdir,
                            logical_date=_logical_date_of(task_instance))


def _logical_date_of(task_instance: Any) -> datetime | None:
    """The run's logical date if the task instance already holds it, without loading anything.

    The scheduler may set ``logical_date`` on the instance; otherwise a ``dag_run`` that
    is already loaded is read (never lazily fetched: this runs once per try sent).
    Anything but a datetime (a test double's attribute) counts as not known.
    """
    value = getattr(task_instance, "logical_date", None)
    if not isinstance(value, datetime):
        run = vars(task_instance).get("dag_run") if hasattr(task_instance, "__dict__") else None
        value = getattr(run, "logical_date", None)
    return value if isinstance(value, datetime) else None
