"""When a warm pod is ready for its task: the executor follows the pod's log until the pod says so.

A warm pod is Running long before it can take a task: its interpreter still imports
crossdock, the operators and the Kubernetes client, then lists its own pod object and
only then watches it. A task assigned in that gap waits for all of it, and so pays more
than a cold pod would. So the pod prints :data:`READY_LINE` once its watch would see an
assignment, and the executor offers a warm pod to a try only after reading that line.

The signal travels on the pod's container log, read with ``follow=true`` (the
``pods/log`` read the executor already has): the pod needs no permission to write
anything, and nothing but the API server and the node carry it, on the local runtime
and on a cluster alike. Each warm pod is followed, from when the executor sees it Running,
on a daemon thread of its own, which ends when the line is read, the pod ends, or the
follow is cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import urllib3
from kubernetes.client.rest import ApiException

from crossdock.kubernetes.pod_generator import BASE_CONTAINER_NAME
from crossdock.kubernetes.warm_profile import READY_LINE

if TYPE_CHECKING:
    from kubernetes import client

#: Pause between tries to open the log of a pod whose container has not started yet.
RETRY_SECONDS = 0.02
#: Longest pause between tries (they double from RETRY_SECONDS while nothing is read).
MAX_RETRY_SECONDS = 0.5
#: A follower gives up after the API has been unreachable this long.
UNREACHABLE_SECONDS = 15.0
#: Read timeout of one follow request; the follow is then opened again (and may see a cancel).
READ_TIMEOUT_SECONDS = 10.0


class ReadinessFollower:
    """Follows one warm pod's container log on a thread until :data:`READY_LINE` appears."""

    def __init__(self, core: "client.CoreV1Api", *, name: str, namespace: str, give_up_after: float):
        self.name, self.namespace = name, namespace
        self.ready = threading.Event()
        self._cancelled = threading.Event()
        self._core = core
        self._deadline = time.monotonic() + give_up_after
        self._thread = threading.Thread(target=self._follow, name=f"warm-ready-{name}", daemon=True)
        self._thread.start()

    @property
    def is_ready(self) -> bool:
        return self.ready.is_set()

    def cancel(self) -> None:
        """Stop following (the pod was taken, deleted or expired); the thread ends on its next read."""
        self._cancelled.set()

    def _follow(self) -> None:
        pause, unreachable_since = RETRY_SECONDS, None
        while not self._cancelled.is_set() and time.monotonic() < self._deadline:
            try:
                response = self._core.read_namespaced_pod_log(
                    self.name, self.namespace, container=BASE_CONTAINER_NAME, follow=True,
                    _preload_content=False, _request_timeout=(5.0, READ_TIMEOUT_SECONDS))
            except ApiException as exc:
                if exc.status in (401, 403):
                    _warn_unreadable_once(self.namespace, exc)
                    return  # never readable: the pod stays unoffered and expires
                if exc.status == 404 and not self._pod_exists():
                    return  # gone
                # else 400: the container is still starting, or 404 from a node that has not
                # taken the bound pod in yet (a kubelet answers so until it has synced it)
                unreachable_since = None
            except (urllib3.exceptions.HTTPError, OSError):
                # The API cannot be reached: a pod the executor cannot hear from stays unoffered.
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > UNREACHABLE_SECONDS:
                    return
            else:
                unreachable_since = None
                try:
                    if saw_ready_line(response.stream(4096), self._cancelled):
                        self.ready.set()
                        return
                except (urllib3.exceptions.HTTPError, OSError):
                    pass  # a read timeout or a cut connection: follow again
                finally:
                    response.close()  # a follow is never read to its end: its connection is not reused
                    response.release_conn()
                # Ended without the line: the server cut the follow (a pod not on a node yet
                # has an empty log, as on a real API server); a pod that ended is taken out of
                # the pool and its follow cancelled.
            self._cancelled.wait(pause)
            pause = min(pause * 2, MAX_RETRY_SECONDS)

    def _pod_exists(self) -> bool:
        """Whether the pod object is still there (a 404 from its node alone does not say it is gone)."""
        try:
            self._core.read_namespaced_pod(self.name, self.namespace, _preload_content=False).release_conn()
        except ApiException as exc:
            return exc.status != 404
        except (urllib3.exceptions.HTTPError, OSError):
            pass  # unsure: follow again; the pool cancels the follow of a pod that is gone
        return True


_warned_unreadable = threading.Event()


def _warn_unreadable_once(namespace: str, exc: ApiException) -> None:
    """Say once per process why warm pods go unused: their logs cannot be read."""
    if not _warned_unreadable.is_set():
        _warned_unreadable.set()
        logging.getLogger(__name__).warning(
            "cannot read warm pods' logs in namespace %s (%s %s): no warm pod will be offered a task; "
            "the executor needs get on pods/log", namespace, exc.status, exc.reason)


def saw_ready_line(chunks, cancelled: threading.Event) -> bool:
    """True once :data:`READY_LINE` is in the stream of byte ``chunks`` (it may span two)."""
    marker = READY_LINE.encode()
    tail = b""
    for chunk in chunks:
        if cancelled.is_set():
            return False
        seen = tail + chunk
        if marker in seen:
            return True
        tail = seen[-len(marker):]
    return False
