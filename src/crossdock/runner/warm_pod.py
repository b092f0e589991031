"""What a warm pod runs: start, import the runner and the operators, wait for one task, run it, exit.

``python -m crossdock.runner.warm_pod`` is the ``base`` container's command of a warm pod
(:mod:`crossdock.kubernetes.warm_profile`). It pays a pod's start-up ahead of need: the
interpreter, crossdock, the runner and the built-in operators (not the user's DAG file,
whose import belongs to the try). Then it says it is ready on its log (the executor offers it a task only after reading
that) and watches its own pod object
(``fieldSelector=metadata.name=<itself>``) with the client configured as the executor's
is (``[kubernetes_executor]`` in_cluster / config_file; on a cluster the pod's service
account, which needs only get/list/watch on pods of its namespace) until the executor
writes its one assignment annotation, and runs exactly that ``crossdock tasks run ...``
command in this process, as the cold pod's ``crossdock`` would, and exits with its code.

It never takes a second task: it reads the first assignment it sees and stops watching.
Before the try starts, the client is closed and the environment scrubbed as a cold pod's
(no database, broker or other secret; configuration read again), so the try sees what it
would have seen in a cold pod. Without an assignment it exits 0 after its idle limit, and
when its pod object is deleted; a command that is not a task command exits 2 unrun.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

#: Exit code of a refused assignment (the runner's usage error).
EXIT_REFUSED = 2
#: Server-side lifetime of one watch request; the pod then watches again from where it was.
WATCH_SECONDS = 60
#: Idle limit when the pod's environment gives none.
DEFAULT_IDLE_SECONDS = 300.0


def _say(message: str) -> None:
    print(f"crossdock warm pod: {message}", file=sys.stderr, flush=True)


def _say_ready(line: str) -> None:
    """The line the executor waits for before it offers this pod a task."""
    print(line, file=sys.stderr, flush=True)


def wait_for_assignment(core: Any, *, name: str, namespace: str, idle_seconds: float,
                        on_watching: Callable[[], None] = lambda: None) -> list[str] | None:
    """The command assigned to pod ``namespace/name``; None when idle too long or the pod is deleted.

    ``on_watching`` is called once an assignment from then on is certain to be seen (the
    pod's object was read and the watch will start at that version).
    """
    from kubernetes import watch

    from crossdock.kubernetes.warm_profile import assignment_of

    selector = f"metadata.name={name}"
    deadline = time.monotonic() + idle_seconds
    listing = core.list_namespaced_pod(namespace, field_selector=selector)
    if not listing.items:
        return None
    pod = core.api_client.sanitize_for_serialization(listing.items[0])
    command = assignment_of(pod)
    version = listing.metadata.resource_version
    if command is None:
        on_watching()
    while command is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        stream = watch.Watch().stream(core.list_namespaced_pod, namespace, field_selector=selector,
                                      resource_version=version, allow_watch_bookmarks=False,
                                      timeout_seconds=max(1, int(min(remaining, WATCH_SECONDS))))
        for event in stream:
            raw = event.get("raw_object") or {}
            if event.get("type") == "ERROR":  # history compacted: list again
                return wait_for_assignment(core, name=name, namespace=namespace,
                                           idle_seconds=max(0.0, deadline - time.monotonic()))  # readiness was said already
            if event.get("type") == "DELETED" or (raw.get("metadata") or {}).get("deletionTimestamp"):
                return None
            version = (raw.get("metadata") or {}).get("resourceVersion", version)
            command = assignment_of(raw)
            if command is not None:
                break
    return command


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


def main() -> int:
    from crossdock.kubernetes.warm_profile import IDLE_SECONDS_ENV, POD_NAME_ENV, POD_NAMESPACE_ENV, READY_LINE

    name = os.environ.get(POD_NAME_ENV) or os.environ.get("HOSTNAME", "")
    namespace = os.environ.get(POD_NAMESPACE_ENV, "default")
    idle = float(os.environ.get(IDLE_SECONDS_ENV) or DEFAULT_IDLE_SECONDS)
    from kubernetes import client

    from crossdock.kubernetes.kube_client import get_kube_client
    from crossdock.runner.warm import preload_task_modules

    preload_task_modules()
    api_client = get_kube_client()
    try:
        command = wait_for_assignment(client.CoreV1Api(api_client), name=name, namespace=namespace,
                                      idle_seconds=idle, on_watching=lambda: _say_ready(READY_LINE))
    finally:
        api_client.close()  # the try gets no API credentials from us
        del api_client
    if command is None:
        _say("no task assigned; exiting")
        return 0
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
