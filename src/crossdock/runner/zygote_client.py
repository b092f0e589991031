"""Run task commands one at a time, each in a fork of a lean zygote this process owns.

A Celery pool process runs one try at a time and waits for it. Forking the pool process
itself would copy a process that carries Celery, kombu and the broker clients; a
:func:`~crossdock.runner.zygote.spawn_zygote` process carries only what a try needs, so
each fork (and each child's exit) costs less. The zygote is started once per owning
process and reused for every try after that.

The zygote reads its configuration from the environment when it starts; if the
``CROSSDOCK_*`` environment or ``sys.path`` of the owner changes, the next try starts a
new zygote rather than run with stale settings.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Hashable, Sequence

from crossdock.runner.fork import EXIT_CHILD_CRASHED, ForkResult
from crossdock.runner.interrupt import KILL_GRACE_SECONDS
from crossdock.runner.zygote import ZygoteHandle, spawn_zygote

#: Seconds a retired zygote gets to exit on its own before it is killed.
RETIRE_TIMEOUT_SECONDS = 2.0


def _settings_fingerprint(use_fork: bool) -> tuple:
    """What a spawned zygote took from its owner when it started."""
    environment = tuple(sorted((name, value) for name, value in os.environ.items()
                               if name.startswith("CROSSDOCK")))
    return use_fork, environment, tuple(sys.path)


class ZygoteRunner:
    """This process's zygote and the one try it runs at a time."""

    def __init__(self) -> None:
        self._handle: ZygoteHandle | None = None
        self._fingerprint: tuple | None = None
        self._owner_pid: int | None = None

    @property
    def zygote_pid(self) -> int | None:
        return self._handle.pid if self._handle is not None else None

    def start(self, *, use_fork: bool = True) -> ZygoteHandle:
        """The running zygote, started (again) if there is none or its settings are stale."""
        fingerprint = _settings_fingerprint(use_fork)
        handle = self._handle
        if handle is not None and (self._owner_pid != os.getpid() or self._fingerprint != fingerprint):
            self._retire()
            handle = None
        if handle is None:
            handle = self._handle = spawn_zygote(use_fork=use_fork)
            self._fingerprint, self._owner_pid = fingerprint, os.getpid()
        return handle

    def run(self, key: Hashable, command: Sequence[str], *, use_fork: bool = True) -> ForkResult:
        """Run one task command and wait for its outcome.

        If the zygote dies while the try runs, the try ends failed with that reason (its
        process got SIGTERM from the kernel) and the next try starts a new zygote. If
        waiting is interrupted (a Celery time limit, a shutdown), the try is stopped
        before the exception goes on: no try keeps running unwatched.
        """
        started = time.monotonic()
        handle = self.start(use_fork=use_fork)
        try:
            handle.send(("run", key, list(command)))
        except OSError:  # the idle zygote died since the last try: one new one
            self._retire()
            handle = self.start(use_fork=use_fork)
            handle.send(("run", key, list(command)))
        try:
            while True:
                message = handle.connection.recv()
                # "started", or the late "finished" of a try abandoned by an interruption.
                if message[0] == "finished" and message[1] == key:
                    _kind, _key, exit_code, reason, duration, values = message
                    return ForkResult(exit_code=exit_code, reason=reason, duration=duration, values=values)
        except (EOFError, OSError):
            pid = handle.pid
            self._retire()
            return ForkResult(exit_code=EXIT_CHILD_CRASHED,
                              reason=f"the process that forked this try (pid {pid}) died while it ran",
                              duration=time.monotonic() - started)
        except BaseException:
            try:
                handle.send(("kill", key, KILL_GRACE_SECONDS))
            except OSError:
                pass
            raise

    def _retire(self) -> None:
        """Let the zygote go: it exits once its connection closes; kill it if it lingers."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        handle.close()
        if self._owner_pid != os.getpid():
            return  # a forked copy of the owner: the zygote is not this process's child
        deadline = time.monotonic() + RETIRE_TIMEOUT_SECONDS
        while not handle.reap():
            if time.monotonic() > deadline:
                handle.kill()
                break
            time.sleep(0.01)

    def close(self) -> None:
        self._retire()


_runner: ZygoteRunner | None = None


def process_runner() -> ZygoteRunner:
    """The :class:`ZygoteRunner` of this process (one per process, created on first use)."""
    global _runner
    if _runner is None:
        _runner = ZygoteRunner()
    return _runner
