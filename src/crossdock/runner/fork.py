"""Run a task command in a fork of this (already warm) process, or in a new interpreter.

Design principle 5: a task's cost is a fork, not a new Python interpreter that imports
crossdock, SQLAlchemy and the DAG's libraries again. A process that has crossdock
imported (a Celery worker, the LocalExecutor's zygote) calls
:func:`start_forked_command`; the child runs :func:`crossdock.runner.task_runner.run_task`
and leaves with ``os._exit`` so it can never fall back into the parent's code.

Either way the child leads its own process group (so one ``killpg`` stops the task and
everything it started) and its stderr comes back through a pipe: the runner's last
line there, ``crossdock: task failed: …``, becomes :attr:`ForkResult.reason`.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Sequence

from crossdock.processes import describe_exit
from crossdock.runner.command import validate_task_command
from crossdock.runner.interrupt import KILL_GRACE_SECONDS, format_seconds
from crossdock.runner.task_log import flush_std_streams
from crossdock.runner.task_runner import FAILURE_PREFIX, failure_reason_from_stderr
from crossdock.runner.try_values import MAX_TRY_VALUES_BYTES, values_from_output

#: How much of a child's stderr is kept: only its end matters (the failure line, or the
#: line of pushed values, is last), and the values line may be as long as a try may push.
STDERR_TAIL_BYTES = 64 * 1024 + MAX_TRY_VALUES_BYTES
_READ_CHUNK = 64 * 1024
#: Where ``pidfd_open`` is missing (Linux < 5.3, other systems), how often a waiting
#: caller re-checks a child whose stderr is already closed.
FALLBACK_POLL_SECONDS = 0.05
#: Exit code of a child whose runner could not even start (``EX_SOFTWARE``).
EXIT_CHILD_CRASHED = 70
_PR_SET_PDEATHSIG = 1
_replaced_streams: list = []


@dataclass(frozen=True)
class ForkResult:
    """How a task command ended.

    :param exit_code: the process exit code; negative ``-N`` when killed by signal ``N``.
    :param reason: the one-line failure reason, None on success.
    :param duration: seconds from start to the child's exit, as seen by the parent.
    :param values: a successful try's pushed XComs, key → XCom text; None when it pushed none.
    """

    exit_code: int
    reason: str | None
    duration: float
    values: dict[str, str] | None = None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def _open_pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:
        return None


class ForkedTask:
    """A running task command in a child process of this one.

    The parent must not let it go unwatched: call :meth:`poll` when one of
    :meth:`watch_fds` is readable (or :meth:`wait`) until it returns a result, which
    also reaps the child. With ``pidfd_open`` available (Linux 5.3+), waiting needs no
    polling at all: the pidfd becomes readable the moment the child exits.
    """

    def __init__(self, pid: int, stderr_fd: int, started_at: float, *, kill_group_on_exit: bool = True):
        self.pid = pid
        self.stderr_fd = stderr_fd
        #: Wall-clock start (``time.time()``), for logs and ``running`` events.
        self.started_at = started_at
        self._started_monotonic = time.monotonic()
        self._kill_group_on_exit = kill_group_on_exit
        self._tail = bytearray()
        self._stderr_open = True
        self._read_error: OSError | None = None
        self._pidfd = _open_pidfd(pid)
        self._result: ForkResult | None = None
        self._reason_override: str | None = None

    def __repr__(self) -> str:
        return f"ForkedTask(pid={self.pid})"

    # -- watching ----------------------------------------------------------------------
    @property
    def pidfd(self) -> int | None:
        return self._pidfd

    @property
    def stderr_eof(self) -> bool:
        return not self._stderr_open

    @property
    def needs_polling(self) -> bool:
        """True when nothing will become readable at the child's exit (no pidfd, stderr closed)."""
        return self._result is None and self._pidfd is None and not self._stderr_open

    def watch_fds(self) -> list[int]:
        """The fds that become readable when this task has news (output or exit)."""
        fds = []
        if self._stderr_open:
            fds.append(self.stderr_fd)
        if self._pidfd is not None and self._result is None:
            fds.append(self._pidfd)
        return fds

    def read_stderr(self) -> None:
        """Take whatever the child wrote to stderr, without blocking."""
        while self._stderr_open:
            try:
                chunk = os.read(self.stderr_fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as exc:
                self._read_error = exc
                chunk = b""
            if not chunk:
                self._stderr_open = False
                return
            self._tail += chunk
            if len(self._tail) > STDERR_TAIL_BYTES:
                del self._tail[:len(self._tail) - STDERR_TAIL_BYTES]

    @property
    def stderr_tail(self) -> str:
        """The end of what the child wrote to stderr so far."""
        return self._tail.decode("utf-8", "replace")

    def poll(self) -> ForkResult | None:
        """The result once the child has exited (and is reaped); None while it runs."""
        if self._result is not None:
            return self._result
        self.read_stderr()
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: the exit status is lost
            pid, status = self.pid, None
        if pid == 0:
            return None
        duration = time.monotonic() - self._started_monotonic
        self.read_stderr()
        if self._kill_group_on_exit:
            # Anything the task started in its own process group ends with the try.
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        exit_code = os.waitstatus_to_exitcode(status) if status is not None else EXIT_CHILD_CRASHED
        values = values_from_output(bytes(self._tail)) if exit_code == 0 else None
        self._result = ForkResult(exit_code, self._reason_for(exit_code), duration, values)
        self.close()
        return self._result

    def _reason_for(self, exit_code: int) -> str | None:
        if exit_code == 0:
            return None
        if exit_code < 0:
            reason = describe_exit(exit_code)
        else:
            reason = (failure_reason_from_stderr(bytes(self._tail))
                      or _last_line(self.stderr_tail)
                      or f"task process exited with code {exit_code}"
                      + (f" (its stderr could not be read: {self._read_error})" if self._read_error else ""))
        if self._reason_override:
            reason = f"{self._reason_override}; {reason}"
        return reason

    def wait(self, timeout: float | None = None) -> ForkResult | None:
        """Block until the child exits (its result) or ``timeout`` seconds pass (None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self.poll()
            if result is not None:
                return result
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            fds = self.watch_fds()
            if self.needs_polling or self._pidfd is None:
                remaining = FALLBACK_POLL_SECONDS if remaining is None else min(remaining, FALLBACK_POLL_SECONDS)
            if fds:
                select.select(fds, [], [], remaining)
            else:
                time.sleep(remaining)

    # -- stopping ----------------------------------------------------------------------
    def send_signal(self, signum: int) -> None:
        """Signal the task's whole process group (the runner and what it started)."""
        if self._result is not None:
            return
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, *, grace: float = KILL_GRACE_SECONDS, reason: str | None = None) -> ForkResult:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds; return the result.

        :param reason: put before the signal in the result's reason (``"timed out after 5s"``).
        """
        if reason and self._result is None:
            self._reason_override = reason
        self.send_signal(signal.SIGTERM)
        result = self.wait(grace)
        if result is None:
            self.send_signal(signal.SIGKILL)
            result = self.wait()
        return result

    def close(self) -> None:
        """Release the parent's fds; the owner must stop selecting on them first."""
        self._stderr_open = False
        for attr in ("stderr_fd", "_pidfd"):
            fd = getattr(self, attr)
            if fd is not None and fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.stderr_fd = -1
        self._pidfd = None


def _last_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:1000] if lines else None


# -- starting ----------------------------------------------------------------------------
def start_forked_command(command: Sequence[str], *, die_with_parent: bool = False) -> ForkedTask:
    """Fork, and run ``command`` (``crossdock tasks run …``) in the child.

    Raises :class:`~crossdock.runner.command.InvalidCommandError` (nothing is run) for
    any other command.

    :param die_with_parent: the child gets SIGTERM if this process dies (Linux), so a
        crashed supervisor does not leave an unwatched task running. Only for a
        single-threaded parent: the kernel ties it to the forking *thread*.
    """
    validate_task_command(command)
    command = list(command)
    signals = _signals_to_reset()
    if die_with_parent:
        _prctl()
    read_fd, write_fd = os.pipe()  # both close-on-exec
    parent_pid = os.getpid()
    flush_std_streams()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        _child_main(command, stderr_fd=write_fd, parent_pid=parent_pid if die_with_parent else None,
                    signals=signals)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    return ForkedTask(pid, read_fd, time.time())


def _child_main(command: list[str], *, stderr_fd: int, parent_pid: int | None, signals: list[int]) -> None:
    """The forked child: become a clean task process, run the try, ``os._exit``."""
    code = EXIT_CHILD_CRASHED
    try:
        # Nothing the forking process allocated is collected in the try: finalizing its
        # garbage could close an fd number the try has since reused (see _isolate_fds).
        gc.freeze()
        os.setpgid(0, 0)
        if parent_pid is not None:
            _die_with_parent(parent_pid)
        _reset_signals(signals)
        _isolate_fds(stderr_fd)
        _std_streams_on_fds()
        from crossdock.runner.task_runner import run_task

        code = run_task(command[3:])
    except BaseException as exc:  # never let anything return into the parent's code
        try:
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
            os.write(2, f"{FAILURE_PREFIX}task process crashed: {type(exc).__name__}: {exc}\n"
                        .encode("utf-8", "replace"))
        except BaseException:
            pass
    finally:
        try:
            flush_std_streams()
        finally:
            os._exit(code if isinstance(code, int) else EXIT_CHILD_CRASHED)


def _die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """Ask the kernel for ``signum`` when the parent (thread) dies (Linux; elsewhere a no-op)."""
    prctl = _prctl()
    if prctl is None:
        return
    prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(EXIT_CHILD_CRASHED)


_prctl_function: list = []


def _prctl():
    """libc's ``prctl``, looked up once per process (the forking parent does it for its
    children: a child that loads ctypes and libc itself pays for it on every try)."""
    if not _prctl_function:
        try:
            import ctypes

            _prctl_function.append(ctypes.CDLL(None, use_errno=True).prctl)
        except (OSError, AttributeError):
            _prctl_function.append(None)
    return _prctl_function[0]


def _signals_to_reset() -> list[int]:
    """The signals this process handles in its own way (not the default action)."""
    import _signal

    found = []
    for signum in range(1, _signal.NSIG):
        if signum in (_signal.SIGKILL, _signal.SIGSTOP, _signal.SIGPIPE):
            continue  # SIGPIPE stays ignored, as in any Python process: writes raise instead
        try:
            handler = _signal.getsignal(signum)
        except (OSError, ValueError):
            continue
        if signum == _signal.SIGINT:
            if handler is not _signal.default_int_handler:
                found.append(signum)
        elif handler not in (_signal.SIG_DFL, None):
            found.append(signum)
    return found


def _reset_signals(signals: list[int] | None = None) -> None:
    """Default handlers, nothing blocked, no wakeup fd: the parent's signal plumbing
    (a worker's or the zygote's) must not fire inside a task.

    :param signals: the ones to reset, as :func:`_signals_to_reset` found them in the
        parent before the fork (cheaper there: the child's pages are copied on write).
    """
    import _signal

    try:
        _signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    for signum in _signals_to_reset() if signals is None else signals:
        try:
            _signal.signal(signum, _signal.default_int_handler if signum == _signal.SIGINT else _signal.SIG_DFL)
        except (OSError, ValueError):
            continue


def _isolate_fds(stderr_fd: int, *, keep: frozenset[int] = frozenset()) -> None:
    """stdin from /dev/null, stderr into the pipe, every other inherited fd let go.

    Inherited fds ≥ 3 (a worker's broker socket, a scheduler's database connection)
    are pointed at /dev/null rather than closed: Python objects in the child still own
    those numbers, and if one of them is garbage-collected later it closes its number
    — which after a plain close could by then be the task's log file. With /dev/null
    in place the number stays taken until its owner lets go. ``keep`` lists fds to leave.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(stderr_fd, 2)
    for fd in _open_fds():
        if fd > 2 and fd != devnull and fd not in keep:
            try:
                os.dup2(devnull, fd)
            except OSError:
                pass
    os.close(devnull)


def _std_streams_on_fds() -> None:
    """``sys.std*`` as plain streams on fds 0/1/2: a parent may have replaced them (a Celery
    worker's logging proxy) with objects that would route a task's prints elsewhere.
    Streams that already are plain line-buffered ones on those fds (a zygote's) are kept."""
    from crossdock.runner.task_log import fd_text_stream, is_plain_line_stream

    if not is_plain_line_stream(sys.stdin, 0):
        _replaced_streams.extend((sys.stdin, sys.__stdin__))
        sys.stdin = sys.__stdin__ = open(0, "r", encoding="utf-8", closefd=False)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = getattr(sys, name)
        if stream is getattr(sys, f"__{name}__") and is_plain_line_stream(stream, fd):
            continue
        # Keep the replaced objects alive: collecting one would close its fd, which may be 0/1/2.
        _replaced_streams.extend((stream, getattr(sys, f"__{name}__")))
        new = fd_text_stream(fd)
        setattr(sys, name, new)
        setattr(sys, f"__{name}__", new)


def _open_fds() -> list[int]:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return sorted(int(name) for name in os.listdir(folder) if name.isdigit())
        except OSError:
            continue
    limit = min(os.sysconf("SC_OPEN_MAX"), 4096)
    fds = []
    for fd in range(limit):
        try:
            os.fstat(fd)
        except OSError:
            continue
        fds.append(fd)
    return fds


def interpreter_command(command: Sequence[str]) -> list[str]:
    """The argv that runs a task command in a new interpreter: ``python -m crossdock tasks run …``."""
    return [sys.executable, "-m", "crossdock", *list(command)[1:]]


def _catchable_signals() -> set[int]:
    return {signum for signum in signal.valid_signals() if signum not in (signal.SIGKILL, signal.SIGSTOP)}


def start_subprocess_command(command: Sequence[str]) -> ForkedTask:
    """Run ``command`` in a new Python interpreter (``python -m crossdock tasks run …``).

    The slow, fully isolated mode (``[local_executor] fork = False``): nothing of this
    process's state reaches the task. ``posix_spawn`` starts it, so no Python code runs
    between fork and exec.
    """
    validate_task_command(command)
    read_fd, write_fd = os.pipe()
    argv = interpreter_command(command)
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, write_fd, 2),
    ]
    flush_std_streams()
    try:
        pid = os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=file_actions,
                             setpgroup=0, setsigmask=set(), setsigdef=_catchable_signals())
    finally:
        os.close(write_fd)
    os.set_blocking(read_fd, False)
    return ForkedTask(pid, read_fd, time.time())


def _finish(task: ForkedTask, timeout: float | None) -> ForkResult:
    result = task.wait(timeout)
    if result is None:
        result = task.stop(reason=f"timed out after {format_seconds(timeout)}")
    return result


def run_command_in_fork(command: Sequence[str], timeout: float | None = None) -> ForkResult:
    """Fork, run one task command, wait for it; the Celery worker's way of running a task.

    :param timeout: seconds after which the task's process group is stopped (SIGTERM,
        then SIGKILL); None waits as long as the task runs (its own
        ``execution_timeout`` still applies inside).
    """
    return _finish(start_forked_command(command), timeout)


def run_command_in_subprocess(command: Sequence[str], timeout: float | None = None) -> ForkResult:
    """Like :func:`run_command_in_fork`, in a new interpreter instead of a fork."""
    return _finish(start_subprocess_command(command), timeout)
