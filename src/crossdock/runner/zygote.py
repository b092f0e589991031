"""A warm process that forks one child per task command and reports how each ended.

The LocalExecutor lives in the scheduler, which holds database connections, threads
and a lot of state no task should inherit. So at start it forks this process once,
early; the zygote has crossdock imported and little else going on, and every task is a
fork of *it*. It watches its children with one selector over their pidfds, stderr
pipes and its command connection, so it sleeps until something happens.

Protocol (tuples over a ``multiprocessing`` connection, keys are opaque):

to the zygote::

    ("run", key, command)                 start a task command
    ("kill", key, grace)                  SIGTERM its process group, SIGKILL after grace
    ("stop",)                             exit once every running task has ended
    ("terminate", grace)                  kill every task (as "kill"), then exit

from the zygote::

    ("started", key, pid, hostname)
    ("finished", key, exit_code, reason, duration, values)

If the connection closes (the scheduler died), the zygote kills every task and exits:
with the scheduler gone nobody would record their outcome.

Two ways to start one. :func:`start_zygote` forks the owner (the zygote sees the
owner's configuration exactly; tests use it). :func:`spawn_zygote` starts a new
interpreter that imports only what a try needs (the LocalExecutor's and a Celery pool
process's way): nothing of the owner's memory reaches the tries, and a fork
costs in proportion to the parent's memory, and a pool process carries Celery, kombu
and the broker clients that no task uses, so forking a lean process makes every try
cheaper. A spawned zygote reads the configuration from the environment and files, as
any crossdock process does.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection, Pipe
from typing import Any, Hashable

from crossdock.configuration import conf
from crossdock.runner.command import InvalidCommandError
from crossdock.runner.context import task_hostname
from crossdock.runner.dag_warmup import warm_dag_file
from crossdock.runner.fork import (
    FALLBACK_POLL_SECONDS,
    ForkedTask,
    _die_with_parent,
    _isolate_fds,
    _std_streams_on_fds,
    start_forked_command,
    start_subprocess_command,
)
from crossdock.runner.interrupt import KILL_GRACE_SECONDS
from crossdock.runner.task_log import flush_std_streams
from crossdock.runner.task_runner import task_logging_level
from crossdock.runner.warm import preload_task_modules

#: Seconds the owner waits for a stopping zygote before it kills it.
STOP_TIMEOUT_SECONDS = 10.0


class ZygoteHandle:
    """The owner's side: the zygote's pid and the connection to it."""

    def __init__(self, pid: int, connection: Connection):
        self.pid = pid
        self.connection = connection
        self._reaped = False

    def fileno(self) -> int:
        return self.connection.fileno()

    def send(self, message: tuple) -> None:
        """Raises ``OSError`` (e.g. ``BrokenPipeError``) when the zygote is gone."""
        self.connection.send(message)

    def receive_ready(self) -> list[tuple]:
        """Every message already waiting; raises ``EOFError`` once the zygote is gone."""
        messages = []
        while self.connection.poll(0):
            messages.append(self.connection.recv())
        return messages

    def reap(self, *, block: bool = False) -> bool:
        """Collect the zygote's exit status; True once it is gone."""
        if self._reaped:
            return True
        try:
            pid, _status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid = self.pid
        if pid:
            self._reaped = True
        return self._reaped

    def kill(self) -> None:
        """SIGKILL the zygote and reap it (its tasks get SIGTERM from the kernel)."""
        if not self._reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.reap(block=True)

    def close(self) -> None:
        try:
            self.connection.close()
        except OSError:
            pass


def start_zygote(*, use_fork: bool = True) -> ZygoteHandle:
    """Fork the zygote; ``use_fork=False`` makes it start each task as a new interpreter."""
    owner_end, zygote_end = Pipe(duplex=True)
    flush_std_streams()
    owner_pid = os.getpid()
    # The kernel ties "parent death" to the forking thread; only the main thread lives
    # as long as the owner process.
    tie_to_owner = threading.current_thread() is threading.main_thread()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the zygote process
        code = 0
        try:
            # The owner's objects are never collected here: garbage it left (a file or socket
            # object whose number was closed under it) would close that number when
            # finalized, by then perhaps a try's pipe. It also keeps their pages shared.
            gc.freeze()
            owner_end.close()
            if tie_to_owner:
                # Backstop for an owner killed outright while another process it forked
                # still holds its end of the connection (so no EOF would arrive).
                _die_with_parent(owner_pid, signal.SIGTERM)
            Zygote(zygote_end, use_fork=use_fork).serve()
        except BaseException:
            code = 1
            try:
                traceback.print_exc()
            except BaseException:
                pass
        finally:
            os._exit(code)
    zygote_end.close()
    return ZygoteHandle(pid, owner_end)


def spawn_zygote(*, use_fork: bool = True) -> ZygoteHandle:
    """Start the zygote as a new interpreter (``python -m crossdock.runner.zygote``).

    It leads its own process group, so a signal meant for the owner's group (a
    terminal's Ctrl-C, a service manager stopping the worker) does not cut its tries
    short: the owner decides. It dies with the owner (its end of the socket closes, and
    the kernel sends SIGTERM as a backstop). ``sys.path`` is passed on, so the DAGs'
    imports resolve as they do in the owner.
    """
    owner_end, zygote_end = socket.socketpair()
    fd = zygote_end.fileno()
    os.set_inheritable(fd, True)
    argv = [sys.executable, "-m", "crossdock.runner.zygote", "--fd", str(fd), "--owner-pid", str(os.getpid())]
    if not use_fork:
        argv.append("--new-interpreter-per-task")
    from crossdock.config_secrets import environment_for_try

    # Only what a try may see: the zygote needs no database or broker settings, and a try
    # could read its environment from /proc.
    env = environment_for_try(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    try:
        pid = os.posix_spawn(sys.executable, argv, env, setpgroup=0,
                             file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)])
    finally:
        zygote_end.close()
    return ZygoteHandle(pid, Connection(owner_end.detach()))


def _spawned_main(argv: list[str] | None = None) -> int:
    """Entry point of a spawned zygote: serve the owner on the inherited socket."""
    parser = argparse.ArgumentParser(prog="python -m crossdock.runner.zygote")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the owner")
    parser.add_argument("--owner-pid", type=int, required=True)
    parser.add_argument("--new-interpreter-per-task", action="store_true")
    args = parser.parse_args(argv)
    _die_with_parent(args.owner_pid, signal.SIGTERM)
    Zygote(Connection(args.fd), use_fork=not args.new_interpreter_per_task).serve()
    return 0


class Zygote:
    """The loop inside the zygote process."""

    def __init__(self, connection: Connection, *, use_fork: bool = True):
        self.connection = connection
        self.use_fork = use_fork
        self.hostname = ""
        self.selector: selectors.BaseSelector | None = None
        self.tasks: dict[Hashable, ForkedTask] = {}
        self.fd_keys: dict[int, Hashable] = {}
        self.kill_deadlines: dict[Hashable, float] = {}
        self.stopping = False

    # -- setup -------------------------------------------------------------------------
    def _prepare_process(self) -> None:
        """Shed the scheduler's signal handling and fds, warm up, freeze the heap."""
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError):
            pass
        # Ctrl-C in the scheduler's terminal reaches the whole foreground group; the
        # scheduler decides what happens to the tasks (end or terminate), not the zygote.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGALRM,
                       signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(signum, signal.SIG_DFL)
        _isolate_fds(2, keep=frozenset({self.connection.fileno()}))
        preload_task_modules()
        # What each child would otherwise set up for itself, once: plain line-buffered
        # std streams and the tasks' logging level (see task_runner).
        _std_streams_on_fds()
        logging.getLogger().setLevel(task_logging_level())
        conf.freeze()  # nothing changes this process's environment from now on
        self.hostname = task_hostname()
        gc.collect()
        # Children never scan the inherited heap: fewer copy-on-write page faults per fork.
        gc.freeze()

    # -- loop --------------------------------------------------------------------------
    def serve(self) -> None:
        self._prepare_process()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.connection.fileno(), selectors.EVENT_READ, None)
        try:
            while not (self.stopping and not self.tasks):
                for selector_key, _events in self.selector.select(self._select_timeout()):
                    if selector_key.data is None:
                        if not self._read_commands():
                            self._kill_all(grace=KILL_GRACE_SECONDS, report=False)
                            return
                    else:
                        self._check(selector_key.data)
                self._escalate_kills()
                self._check_unwatchable()
        finally:
            self.selector.close()

    def _select_timeout(self) -> float | None:
        timeouts = []
        if self.kill_deadlines:
            timeouts.append(max(0.0, min(self.kill_deadlines.values()) - time.monotonic()))
        if any(task.needs_polling for task in self.tasks.values()):
            timeouts.append(FALLBACK_POLL_SECONDS)
        return min(timeouts) if timeouts else None

    def _read_commands(self) -> bool:
        """Handle waiting commands; False when the owner is gone."""
        try:
            while self.connection.poll(0):
                self._handle(self.connection.recv())
        except (EOFError, OSError):
            return False
        return True

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "run":
            _kind, key, command = message
            self._start(key, command)
        elif kind == "kill":
            _kind, key, grace = message
            self._kill(key, grace)
        elif kind == "stop":
            self.stopping = True
        elif kind == "terminate":
            self.stopping = True
            for key in list(self.tasks):
                self._kill(key, message[1])

    def _send(self, message: tuple) -> None:
        try:
            self.connection.send(message)
        except OSError:
            pass  # the owner is gone; the next read of the connection ends the loop

    # -- tasks -------------------------------------------------------------------------
    def _start(self, key: Any, command: list[str]) -> None:
        if key in self.tasks:
            self._send(("finished", key, 1, "the same task try is already running here", 0.0, None))
            return
        try:
            if self.use_fork:
                # The child inherits the DAG loaded here instead of importing it again.
                warm_dag_file(command)
                task = start_forked_command(command, die_with_parent=True)
            else:
                task = start_subprocess_command(command)
        except InvalidCommandError as exc:
            self._send(("finished", key, 2, str(exc), 0.0, None))
            return
        except OSError as exc:
            self._send(("finished", key, 1, f"could not start the task process: {exc}", 0.0, None))
            return
        self.tasks[key] = task
        for fd in task.watch_fds():
            self.selector.register(fd, selectors.EVENT_READ, key)
            self.fd_keys[fd] = key
        self._send(("started", key, task.pid, self.hostname))

    def _check(self, key: Any) -> None:
        task = self.tasks.get(key)
        if task is None:
            return
        result = task.poll()
        if result is None:
            if task.stderr_eof and task.stderr_fd in self.fd_keys:
                self._unwatch(task.stderr_fd)
            return
        self._forget(key)
        self._send(("finished", key, result.exit_code, result.reason, result.duration, result.values))

    def _check_unwatchable(self) -> None:
        for key, task in list(self.tasks.items()):
            if task.needs_polling:
                self._check(key)

    def _unwatch(self, fd: int) -> None:
        self.fd_keys.pop(fd, None)
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def _forget(self, key: Any) -> None:
        """Drop a finished task; its fds were closed by poll(), so unregister by number."""
        self.tasks.pop(key, None)
        self.kill_deadlines.pop(key, None)
        for fd in [fd for fd, owner in self.fd_keys.items() if owner == key]:
            self._unwatch(fd)

    def _kill(self, key: Any, grace: float) -> None:
        task = self.tasks.get(key)
        if task is None:
            return
        task.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + max(0.0, grace)
        self.kill_deadlines[key] = min(deadline, self.kill_deadlines.get(key, deadline))

    def _escalate_kills(self) -> None:
        now = time.monotonic()
        for key, deadline in list(self.kill_deadlines.items()):
            if deadline <= now:
                task = self.tasks.get(key)
                if task is not None:
                    task.send_signal(signal.SIGKILL)
                del self.kill_deadlines[key]

    def _kill_all(self, *, grace: float, report: bool) -> None:
        """Stop every task now (SIGTERM, SIGKILL after ``grace``), without the loop."""
        for task in self.tasks.values():
            task.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for key, task in list(self.tasks.items()):
            result = task.wait(max(0.0, deadline - time.monotonic()))
            if result is None:
                task.send_signal(signal.SIGKILL)
                result = task.wait()
            self._forget(key)
            if report:
                self._send(("finished", key, result.exit_code, result.reason, result.duration, result.values))


if __name__ == "__main__":  # pragma: no cover - runs as the spawned zygote
    sys.exit(_spawned_main())
