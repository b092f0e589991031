"""What a warm pod runs: start, import the runner and the operators, wait for one task, run it, exit.

``python -m crossdock.runner.warm_pod`` is the ``base`` container's command of a warm pod
(:mod:`crossdock.kubernetes.warm_profile`). It pays a pod's start-up ahead of need, at a
lower CPU priority: the interpreter, crossdock, the runner and the built-in operators (not
the user's DAG file, whose import belongs to the try). Then it says it is ready on its log
(the executor offers it a task only after reading that) and watches its own pod object
(``fieldSelector=metadata.name=<itself>``) with the credentials configured for the executor
(``[kubernetes_executor]`` in_cluster / config_file; on a cluster the pod's service account,
which needs only get/list/watch on pods of its namespace) until the executor writes its one
assignment annotation; then it runs exactly that ``crossdock tasks run ...`` command in this
process, as the cold pod's ``crossdock`` would, and exits with its code. The two reads go
through :mod:`crossdock.runner.own_pod_api` (urllib3), not the official client, whose
import would cost each pod more CPU than a small try.

It never takes a second task: it reads the first assignment it sees and stops watching.
Before the try starts, the client is closed and the environment scrubbed as a cold pod's
(no database, broker or other secret; configuration read again), so the try sees what it
would have seen in a cold pod. Without an assignment it exits 0 after its idle limit, and
when its pod object is deleted; a command that is not a task command exits 2 unrun.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Callable

#: Exit code of a refused assignment (the runner's usage error).
EXIT_REFUSED = 2
#: Server-side lifetime of one watch request; the pod then watches again from where it was.
WATCH_SECONDS = 60
#: How much lower a warm pod's CPU priority is while it starts (see start_in_background).
STARTING_NICENESS = 10
#: Idle limit when the pod's environment gives none.
DEFAULT_IDLE_SECONDS = 300.0


def _say(message: str) -> None:
    print(f"crossdock warm pod: {message}", file=sys.stderr, flush=True)


def _say_ready(line: str) -> None:
    """The line the executor waits for before it offers this pod a task."""
    print(line, file=sys.stderr, flush=True)


def wait_for_assignment(api: Any, *, idle_seconds: float,
                        on_watching: Callable[[], None] = lambda: None) -> list[str] | None:
    """The command assigned to this pod; None when idle too long or the pod is deleted.

    ``api`` lists and watches this pod (:class:`~crossdock.runner.own_pod_api.OwnPodApi`, or
    :class:`OfficialClientPodApi`). ``on_watching`` is called once an assignment from then on
    is certain to be seen (the pod's object was read and the watch starts at that version).
    """
    from crossdock.kubernetes.warm_profile import assignment_of
    from crossdock.runner.own_pod_api import WatchExpired

    deadline = time.monotonic() + idle_seconds
    watching = False
    while True:
        pod, version = api.get()
        if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
            return None
        command = assignment_of(pod)
        if command is not None:
            return command
        if not watching:
            on_watching()
            watching = True
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                events = api.events(version, seconds=max(1, int(min(remaining, WATCH_SECONDS))))
                with contextlib.closing(events):  # its connection is let go now, not when collected
                    for kind, raw in events:
                        if kind == "ERROR":  # history compacted: list again
                            raise WatchExpired()
                        if kind == "DELETED" or (raw.get("metadata") or {}).get("deletionTimestamp"):
                            return None
                        version = (raw.get("metadata") or {}).get("resourceVersion", version)
                        command = assignment_of(raw)
                        if command is not None:
                            return command
            return None
        except WatchExpired:
            continue


class OfficialClientPodApi:
    """This pod's list and watch through the official client: for credentials only it handles."""

    def __init__(self, *, name: str, namespace: str):
        from kubernetes import client

        from crossdock.kubernetes.kube_client import get_kube_client

        self._api_client = get_kube_client()
        self._core = client.CoreV1Api(self._api_client)
        self._namespace, self._selector = namespace, f"metadata.name={name}"

    def get(self) -> tuple[dict[str, Any] | None, str]:
        listing = self._core.list_namespaced_pod(self._namespace, field_selector=self._selector)
        pod = self._api_client.sanitize_for_serialization(listing.items[0]) if listing.items else None
        return pod, listing.metadata.resource_version

    def events(self, version: str, *, seconds: int):
        from kubernetes import watch

        for event in watch.Watch().stream(self._core.list_namespaced_pod, self._namespace,
                                          field_selector=self._selector, resource_version=version,
                                          allow_watch_bookmarks=False, timeout_seconds=seconds):
            yield event.get("type", ""), event.get("raw_object") or {}

    def close(self) -> None:
        self._api_client.close()


def pod_api(*, name: str, namespace: str) -> Any:
    """The light reader of this pod where the credentials allow it, else the official client's."""
    from crossdock.configuration import conf
    from crossdock.runner.own_pod_api import UnsupportedCredentials, own_pod_api

    try:
        return own_pod_api(name=name, namespace=namespace,
                           in_cluster=conf.getboolean("kubernetes_executor", "in_cluster"),
                           config_file=conf.getstr("kubernetes_executor", "config_file"),
                           cluster_context=conf.getstr("kubernetes_executor", "cluster_context"))
    except (UnsupportedCredentials, OSError, ValueError) as exc:
        _say(f"reading this pod with the official client ({exc})")
        return OfficialClientPodApi(name=name, namespace=namespace)


def run_assigned(command: list[str]) -> int:
    """Run ``crossdock tasks run ...`` here, with a cold pod's environment; anything else is refused."""
    from crossdock.runner.command import InvalidCommandError, validate_task_command

    try:
        validate_task_command(command)
    except InvalidCommandError as exc:
        _say(f"refusing the assignment: {exc}")
        return EXIT_REFUSED
    from crossdock.config_secrets import scrub_try_environment
    from crossdock.configuration import conf
    from crossdock.runner.task_runner import run_task

    for name in ("CROSSDOCK_POD_NAME", "CROSSDOCK_POD_NAMESPACE", "CROSSDOCK_WARM_IDLE_SECONDS"):
        os.environ.pop(name, None)
    scrub_try_environment(os.environ)
    conf.reload()
    return run_task(command[3:])


def start_in_background() -> int | None:
    """Lower this process's CPU priority while it prepares; the priority to return to, or None.

    A warm pod's imports are work ahead of need: on a node short of CPU they must not slow
    the tries already running there (on the local runtime, every pod shares the host's
    cores). Only done where the priority can be raised again for the try (the capability
    is probed first with a one-step change); elsewhere, as in a pod without CAP_SYS_NICE,
    the pod starts at its normal priority, and its own CPU share (its cgroup) rules anyway.
    """
    try:
        before = os.getpriority(os.PRIO_PROCESS, 0)
        if before >= 19:
            return None
        os.setpriority(os.PRIO_PROCESS, 0, before + 1)
    except OSError:
        return None
    try:
        os.setpriority(os.PRIO_PROCESS, 0, before)
    except OSError:
        return None  # cannot come back: stay one step down, not ten
    try:
        os.setpriority(os.PRIO_PROCESS, 0, min(19, before + STARTING_NICENESS))
    except OSError:
        return None
    return before


def back_to_foreground(before: int | None) -> None:
    """The try runs at the priority the pod was started with."""
    if before is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, before)
        except OSError:
            pass


def main() -> int:
    before = start_in_background()
    from crossdock.kubernetes.warm_profile import IDLE_SECONDS_ENV, POD_NAME_ENV, POD_NAMESPACE_ENV, READY_LINE

    name = os.environ.get(POD_NAME_ENV) or os.environ.get("HOSTNAME", "")
    namespace = os.environ.get(POD_NAMESPACE_ENV, "default")
    idle = float(os.environ.get(IDLE_SECONDS_ENV) or DEFAULT_IDLE_SECONDS)
    from crossdock.runner.warm import preload_task_modules

    preload_task_modules()
    api = pod_api(name=name, namespace=namespace)
    try:
        command = wait_for_assignment(api, idle_seconds=idle, on_watching=lambda: _say_ready(READY_LINE))
    finally:
        api.close()  # the try gets no API credentials from us
        del api
    if command is None:
        _say("no task assigned; exiting")
        return 0
    back_to_foreground(before)
    return run_assigned(command)


def exit_now(code: int) -> None:
    """Leave as a cold pod's ``crossdock`` would, without tearing down every module one by one.

    The try's exit handlers run (``atexit``), output is flushed, then the process ends at
    once: the interpreter's own teardown of the client and runner modules this process
    holds costs a warm pod hundreds of milliseconds a cold one does not pay.
    """
    import atexit
    import logging

    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
