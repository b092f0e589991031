"""The per-pod supervisor process (what containerd-shim is to a container).

It uses the standard library and :mod:`crossdock.processes` (loaded from its file) only. Run as ``python -I -S shim.py POD_DIR``, or started ahead of need as ``shim.py -`` and
handed its pod folder on stdin (so interpreter start-up is off a pod's critical path). It starts the container's process in its own
process group, enforces the memory limit by watching the group's resident memory (and
kills it with the OOM verdict the kernel's cgroup killer would give), and writes the
outcome to ``POD_DIR/result.json``. Because it outlives the node agent, a pod that
finishes while the agent is down still has its exit code when the agent comes back.
The process gets exactly the plan's environment (the agent's own is never passed on)
and the usual umask 022; the shim's own files are 0600.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

#: Seconds between memory checks of a limited container.
MEMORY_POLL_SECONDS = 0.02
#: Every this many polls the shim looks for new processes in the container's group.
RESCAN_EVERY = 10
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: Exit code of a start failure, as container runtimes report it.
START_ERROR_EXIT_CODE = 128
#: What a container's process starts with, as a container runtime's default.
CONTAINER_UMASK = 0o022


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def _load(name: str, relative_path: str):
    """A crossdock module, loaded from its file: run with ``-I -S``, the shim has no crossdock
    package on its path, and importing the package would load far more than it needs."""
    if __package__:  # imported as part of crossdock (the agent reads SHIM_PATH from the module)
        import importlib

        return importlib.import_module(f"crossdock.{name}")
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), relative_path)
    spec = importlib.util.spec_from_file_location(f"crossdock_{name.rpartition('.')[2]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


processes = _load("processes", os.path.join(os.pardir, os.pardir, "processes.py"))


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue
    return total


#: Seconds a pod gets between SIGTERM and SIGKILL when the process it is tied to dies.
LIFELINE_GRACE_SECONDS = 2.0


def stop_group_when_lifeline_ends(lifeline_fd: int, pgid: int) -> None:
    """Block until the lifeline pipe reaches end-of-file (its owner died), then stop the group.

    SIGTERM first, so the task can stop what it started itself, SIGKILL after a short grace.
    """
    try:
        while os.read(lifeline_fd, 512):
            pass
    except OSError:
        pass
    for signum, pause in ((signal.SIGTERM, LIFELINE_GRACE_SECONDS), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, signum)
        except OSError:
            return
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except OSError:
                return
            time.sleep(0.05)


class Volumes:
    """A container's emptyDir volumes: folders in the pod's, mount points claimed, the namespace's setup."""

    def __init__(self, pod_dir: str, plan: dict) -> None:
        self.mounts = plan["mounts"]
        self.mode = plan["mount_namespace"]
        self.pod = os.path.basename(os.path.normpath(pod_dir))
        self.error_path = os.path.join(pod_dir, "mount.err")
        self.points = _load("kubernetes.local_runtime.mount_points", "mount_points.py")
        self.namespace = _load("kubernetes.local_runtime.mount_namespace", "mount_namespace.py")
        self.registry = self.points.registry_for(pod_dir)

    def prepare(self, child_setup, cwd: str | None):
        """Make the volume folders and mount points; the ``preexec_fn`` that enters the namespace."""
        try:
            os.unlink(self.error_path)
        except FileNotFoundError:
            pass
        for volume_dir in {item["volumeDir"] for item in self.mounts}:
            os.makedirs(volume_dir, exist_ok=True)
            os.chmod(volume_dir, self.namespace.VOLUME_MODE)  # emptyDir's mode, umask or not
        try:
            self.points.claim(self.registry, self.pod, [item["target"] for item in self.mounts])
        except OSError as exc:
            self._fail(f"cannot create mount point: {exc}")

        def setup() -> None:
            child_setup()  # first: the working directory is made with the container's umask
            self.namespace.enter(mode=self.mode, mounts=self.mounts, cwd=cwd, error_path=self.error_path)

        return setup

    def _fail(self, message: str) -> None:
        with open(self.error_path, "w", encoding="utf-8") as handle:
            handle.write(message)
        raise OSError(message)

    def error(self) -> str | None:
        try:
            with open(self.error_path, encoding="utf-8") as handle:
                return handle.read().strip() or None
        except OSError:
            return None

    def release(self) -> None:
        self.points.release(self.registry, self.pod)


def main(pod_dir: str, lifeline_fd: int | None = None) -> int:
    with open(os.path.join(pod_dir, "plan.json"), encoding="utf-8") as handle:
        plan = json.load(handle)
    result_path = os.path.join(pod_dir, "result.json")
    env = {str(key): str(value) for key, value in plan["env"].items()}
    cwd = plan.get("cwd")
    log = os.fdopen(os.open(plan["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab", buffering=0)
    started_at = now()

    def child_setup() -> None:
        os.setpgid(0, 0)
        os.umask(CONTAINER_UMASK)
        if plan.get("nice"):
            os.nice(plan["nice"])

    volumes = Volumes(pod_dir, plan) if plan.get("mounts") else None
    try:
        setup = child_setup
        if volumes is not None:  # the working directory may lie in a volume: made inside the namespace
            setup, cwd = volumes.prepare(child_setup, cwd), None
        elif cwd:
            previous = os.umask(CONTAINER_UMASK)
            try:
                os.makedirs(cwd, exist_ok=True)  # the container runtime creates a missing workingDir
            finally:
                os.umask(previous)
        child = subprocess.Popen(plan["argv"], env=env, cwd=cwd or None, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=log, preexec_fn=setup, close_fds=True)
    except (OSError, subprocess.SubprocessError) as exc:
        if volumes is not None and volumes.error():
            message = f"cannot set up the container's volumes: {volumes.error()}"
        elif isinstance(exc, OSError):
            message = f'exec: "{plan["argv"][0]}": {exc.strerror or exc}'
        else:
            message = f'exec: "{plan["argv"][0]}": {exc}'
        log.write((message + "\n").encode())
        write_json(result_path, {"exitCode": START_ERROR_EXIT_CODE, "reason": "StartError", "message": message,
                                 "startedAt": started_at, "finishedAt": now()})
        if volumes is not None:
            volumes.release()
        return 0
    write_json(os.path.join(pod_dir, "started.json"), {"pid": child.pid, "startedAt": started_at})

    # The agent signals the container, not us: forward what it might send to the group.
    def forward(signum: int, _frame: object) -> None:
        try:
            os.killpg(child.pid, signum)
        except OSError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if lifeline_fd is not None:  # tied to the process that started us (``crossdock standalone``)
        threading.Thread(target=stop_group_when_lifeline_ends, args=(lifeline_fd, child.pid), daemon=True).start()
    limit = plan.get("memory_limit_bytes")
    oom = False
    if limit:
        members, tick = [child.pid], 0
        while child.poll() is None:
            if tick % RESCAN_EVERY == 0:  # a full /proc scan is dear; re-read known members in between
                members = processes.group_members(child.pid) or [child.pid]
            tick += 1
            if rss_bytes(members) > limit:
                oom = True
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except OSError:
                    pass
                child.wait()
                break
            time.sleep(MEMORY_POLL_SECONDS)
    code = child.wait()
    try:  # the container ends with its main process: take any leftovers with it
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:
        pass
    if volumes is not None:
        volumes.release()
    exit_code = code if code >= 0 else 128 - code
    if oom or os.path.exists(os.path.join(pod_dir, "oom")):
        reason = "OOMKilled"
        exit_code = 137
    else:
        reason = "Completed" if exit_code == 0 else "Error"
    write_json(result_path, {"exitCode": exit_code, "reason": reason, "signal": -code if code < 0 else None,
                             "startedAt": started_at, "finishedAt": now()})
    return 0


if __name__ == "__main__":
    os.umask(0o077)  # result.json, started.json: the agent's state is owner-only
    target = sys.argv[1]
    if target == "-":  # a warm spare: wait for the pod folder; EOF means the agent is gone
        target = sys.stdin.readline().strip()
        if not target:
            sys.exit(0)
        sys.stdin.close()
    sys.exit(main(target, int(sys.argv[2]) if len(sys.argv) > 2 else None))
