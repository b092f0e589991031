"""Stopping a running task from outside its own code: execution timeouts and SIGTERM.

Both arrive as an exception raised in the thread running the task, so the operator's
own ``try/finally`` and ``except BaseException`` blocks run: a BashOperator kills its
``bash`` process group there. The exceptions derive from ``BaseException`` on purpose,
so a task's ``except Exception:`` cannot swallow its own timeout.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

from crossdock.processes import proc_table

#: Seconds between a SIGTERM to a child process group and the SIGKILL that follows.
KILL_GRACE_SECONDS = 5.0


class TaskInterrupted(BaseException):
    """The task was stopped from outside; ``reason`` is the one-line failure reason.

    Deliberately not a :class:`~crossdock.exceptions.CrossdockError`: that root is an
    ``Exception``, and a task's own ``except Exception:`` would then swallow its timeout.
    """

    reason = "task interrupted"

    def __str__(self) -> str:
        return self.reason


class TaskTimeout(TaskInterrupted):
    """The task ran longer than its ``execution_timeout``."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds
        self.reason = f"execution_timeout of {format_seconds(seconds)} exceeded"


class DagImportTimeout(TaskInterrupted):
    """Importing the DAG file took longer than ``[core] dagbag_import_timeout``."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds
        self.reason = (f"importing the DAG file took longer than {format_seconds(seconds)} "
                       f"([core] dagbag_import_timeout)")


class TaskTerminated(TaskInterrupted):
    """The task's process received a termination signal (an executor revoked or stopped it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.reason = f"received {signal.Signals(signum).name}"


def format_seconds(seconds: float) -> str:
    """``2`` → ``"2s"``, ``1.5`` → ``"1.5s"``: how a timeout reads in a failure reason."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:g}s"


def timeout_seconds(value) -> float | None:
    """An operator's ``execution_timeout`` (timedelta, number or None) in seconds."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


@contextmanager
def execution_timeout(seconds: float | None, *,
                      error: type[TaskInterrupted] = TaskTimeout) -> Iterator[None]:
    """Raise ``error(seconds)`` (:class:`TaskTimeout`) in this thread once ``seconds`` have passed.

    In the main thread a ``SIGALRM`` timer does it, which also interrupts blocking
    system calls such as ``time.sleep`` or a wait on a subprocess. Elsewhere (a runner
    started from a worker thread) a timer thread raises the exception asynchronously,
    which takes effect at the next Python bytecode.
    """
    if seconds is None:
        yield
        return
    if seconds <= 0:
        raise error(seconds)
    if threading.current_thread() is threading.main_thread():
        with _alarm(seconds, error):
            yield
    else:
        with _async_timer(seconds, error):
            yield


@contextmanager
def _alarm(seconds: float, error: type[TaskInterrupted]) -> Iterator[None]:
    def on_alarm(_signum, _frame):
        raise error(seconds)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _async_timer(seconds: float, error: type[TaskInterrupted]) -> Iterator[None]:
    target = threading.get_ident()
    done = threading.Event()

    def fire():
        if not done.wait(seconds):
            import ctypes

            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target),
                                                       ctypes.py_object(_AsyncTimeout))

    class _AsyncTimeout(error):  # SetAsyncExc instantiates the class without arguments
        def __init__(self):
            super().__init__(seconds)

    timer = threading.Thread(target=fire, name="crossdock-execution-timeout", daemon=True)
    timer.start()
    try:
        yield
    finally:
        done.set()
        timer.join()


@contextmanager
def terminate_raises(signals: tuple[int, ...] = (signal.SIGTERM,)) -> Iterator[None]:
    """Turn a termination signal into :class:`TaskTerminated` while the task runs.

    The default action would kill the process on the spot: no final log line, and a
    BashOperator's process group left running. Only possible in the main thread;
    elsewhere the signals keep their current handling.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, _frame):
        raise TaskTerminated(signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def boot_clock() -> float | None:
    """Seconds since boot, the clock ``/proc`` start times are measured on (Linux only)."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(clock) if clock is not None else None


def kill_child_processes(*, started_after: float | None = None, sig: int = signal.SIGKILL) -> list[int]:
    """Kill what this process started and left running; return the pids signalled.

    A safety net after a task was interrupted: an operator is expected to stop its own
    subprocesses, but a task that ignored the interruption must not leave a ``sleep``
    or a whole shell pipeline behind. A child that leads its own process group is
    killed with its group. Linux only (reads ``/proc``); elsewhere it does nothing.

    :param started_after: a :func:`boot_clock` reading; older children (started before
        the task, by whoever runs the task) are left alone.
    """
    me = os.getpid()
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    killed = []
    for pid, ppid, pgid, start_ticks in proc_table():
        if ppid != me:
            continue
        if started_after is not None and start_ticks / ticks < started_after - 1.0 / ticks:
            continue
        try:
            if pgid == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
            killed.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    for pid in killed:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    return killed

