"""One pod's container as the node agent sees it: a folder, a shim process, a result file.

The folder (``<state_dir>/pods/<uid>/``) is the source of truth, not the agent's memory:
``plan.json`` says what was started, ``started.json`` that it started, ``result.json`` how
it ended, ``reported`` that the API server was told. An agent restarted after a crash
rebuilds everything from there. Every file and the folder are owner-only: a plan holds
the pod's environment, secret values included, and the log whatever the task printed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from crossdock.kubernetes.local_runtime import mount_points, shim
from crossdock.kubernetes.local_runtime.launch import LaunchPlan
from crossdock.kubernetes.local_runtime.private_files import open_private, private_dir, touch_private, write_private
from crossdock.processes import pid_alive

SHIM_PATH = shim.__file__
#: Seconds between checks of a container whose shim is not our child (adopted after restart).
ADOPTED_POLL_SECONDS = 0.1
#: How long to wait for the shim to report that the process started.
START_TIMEOUT = 10.0
#: Shims kept started and idle, ready for the next pods.
DEFAULT_SPARE_SHIMS = 2


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_private(path, json.dumps(data))


#: Read end of this process's lifeline pipe once pods are tied to it (see below).
_lifeline: list[int] = []


def tie_pods_to_this_process() -> None:
    """From now on, every pod's shim started here stops its pod when this process ends, however it ends.

    A shim outlives the node agent on purpose (a restarted agent adopts the pod), which
    is right for an agent run as its own service but wrong for ``crossdock standalone``:
    there the runtime lives inside the command, and a killed command must leave no pod
    running. Each shim gets the read end of a pipe whose write end only this process
    holds (children that fork without exec close it), so the kernel closes it when the
    process dies — SIGKILL included — and the shim sees end-of-file and stops its pod.
    """
    if _lifeline:
        return
    read_end, write_end = os.pipe()
    os.register_at_fork(after_in_child=lambda: _close_quietly(write_end))
    _lifeline.append(read_end)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _shim_argv(target: str) -> tuple[list[str], tuple[int, ...]]:
    """The shim's command line for a pod folder (or ``-``), and the fds it must inherit."""
    argv = [sys.executable, "-I", "-S", SHIM_PATH, target]
    if not _lifeline:
        return argv, ()
    return [*argv, str(_lifeline[0])], (_lifeline[0],)


class ShimPool:
    """Shim interpreters started ahead of need, so a pod's start costs a pipe write, not a Python start-up.

    A spare waits on its stdin for a pod folder; when the agent exits, the pipe closes and
    idle spares exit with it.
    """

    def __init__(self, *, spares: int = DEFAULT_SPARE_SHIMS) -> None:
        self.spares = spares
        self._lock = threading.Lock()
        self._ready: list[subprocess.Popen[bytes]] = []

    def _spawn(self) -> subprocess.Popen[bytes]:
        argv, lifeline = _shim_argv("-")
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True, pass_fds=lifeline)

    def fill(self) -> None:
        with self._lock:
            self._ready = [shim for shim in self._ready if shim.poll() is None]
            while len(self._ready) < self.spares:
                self._ready.append(self._spawn())

    def take(self) -> subprocess.Popen[bytes]:
        with self._lock:
            while self._ready:
                shim = self._ready.pop(0)
                if shim.poll() is None:
                    break
            else:
                shim = self._spawn()
        self.fill()
        return shim

    def close(self) -> None:
        with self._lock:
            spares, self._ready = self._ready, []
        for shim in spares:
            try:
                shim.stdin.close()
                shim.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                shim.kill()


class Container:
    """The local process behind a pod, started through the shim or adopted from a crash."""

    def __init__(self, pod_dir: Path, *, container_name: str, pool: ShimPool | None = None) -> None:
        self.dir = pod_dir
        self.name = container_name
        self.pool = pool
        self._shim: subprocess.Popen[bytes] | None = None

    # -- files -----------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.name}.log"

    def plan_exists(self) -> bool:
        return (self.dir / "plan.json").exists()

    def started(self) -> dict[str, Any] | None:
        return read_json(self.dir / "started.json")

    def result(self) -> dict[str, Any] | None:
        return read_json(self.dir / "result.json")

    def mark_reported(self, status: dict[str, Any]) -> None:
        write_json(self.dir / "reported", status)

    def reported(self) -> dict[str, Any] | None:
        return read_json(self.dir / "reported")

    def remove(self) -> None:
        """The folder goes, volumes included, and with it the pod's claim on mount points it made."""
        mount_points.release(mount_points.registry_for(self.dir), self.dir.name)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- process ---------------------------------------------------------------------
    def start(self, plan: LaunchPlan) -> None:
        """Start the shim; clears the outcome of an earlier run (a restart of the container)."""
        private_dir(self.dir)
        for stale in ("started.json", "result.json", "oom", "shim.pid"):
            (self.dir / stale).unlink(missing_ok=True)
        write_private(self.dir / "plan.json", plan.to_json())
        touch_private(self.log_path)
        if self.pool is not None:
            self._shim = self.pool.take()
            write_private(self.dir / "shim.pid", str(self._shim.pid))
            assert self._shim.stdin is not None
            self._shim.stdin.write(str(self.dir).encode() + b"\n")
            self._shim.stdin.close()
            return
        errors = os.fdopen(open_private(self.dir / "shim.err", os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab")
        try:
            argv, lifeline = _shim_argv(str(self.dir))
            self._shim = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errors, stderr=errors,
                                          start_new_session=True, close_fds=True, pass_fds=lifeline)
        finally:
            errors.close()
        write_private(self.dir / "shim.pid", str(self._shim.pid))

    def shim_alive(self) -> bool:
        if self._shim is not None:
            return self._shim.poll() is None
        try:
            pid = int((self.dir / "shim.pid").read_text())
        except (OSError, ValueError):
            return False
        return pid_alive(pid)

    def wait_started(self, timeout: float = START_TIMEOUT) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = self.started()
            if started is not None or self.result() is not None:
                return started
            if not self.shim_alive():
                return self.started()
            time.sleep(0.005)
        return self.started()

    def wait(self, timeout: float) -> dict[str, Any] | None:
        """The outcome, or ``None`` if the process is still running after ``timeout`` seconds."""
        if self._shim is not None:
            try:
                self._shim.wait(timeout=max(timeout, 0))
            except subprocess.TimeoutExpired:
                return None
            return self.result() or self._lost()
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            result = self.result()
            if result is not None:
                return result
            if not self.shim_alive():
                return self.result() or self._lost()
            if time.monotonic() >= deadline:
                return None
            time.sleep(ADOPTED_POLL_SECONDS)

    def _lost(self) -> dict[str, Any]:
        """The shim died without a verdict (killed with the machine, say): what kubelet says then."""
        return {"exitCode": 137, "reason": "ContainerStatusUnknown",
                "message": "The container could not be located when the pod was terminated",
                "startedAt": (self.started() or {}).get("startedAt"), "finishedAt": None}

    def signal(self, signal_number: int) -> bool:
        """Send a signal to the container's process group; False if it is not running."""
        started = self.started()
        if started is None:
            return False
        try:
            os.killpg(int(started["pid"]), signal_number)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def mark_oom(self) -> None:
        touch_private(self.dir / "oom")

    def stop(self, grace_seconds: float) -> dict[str, Any] | None:
        """SIGTERM, then SIGKILL after the grace period, as a kubelet stops a container."""
        self.signal(signal.SIGTERM)
        result = self.wait(grace_seconds)
        if result is None:
            self.signal(signal.SIGKILL)
            result = self.wait(5.0)
        return result
