"""A try's pod log: read live while the pod runs, saved into the try's log file before it goes.

A mixin of :class:`~crossdock.executors.kubernetes_executor.KubernetesExecutor`. The
pod writes its log where the scheduler cannot see it (its own filesystem, on a
cluster) and copies it to its container log; so before a finished pod is deleted its
container log is appended to the try's log file, once (what the file already holds is
not written twice), and ``get_task_log`` reads that file after the pod is gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import urllib3
from kubernetes.client.rest import ApiException

from crossdock.executors.kubernetes_pods import PodRecord
from crossdock.kubernetes.pod_generator import BASE_CONTAINER_NAME
from crossdock.runner.task_log import task_log_path_for_key

if TYPE_CHECKING:
    from kubernetes import client

    from crossdock.models.taskinstance import TaskInstance
    from crossdock.models.taskinstancekey import TaskInstanceKey

#: Lines of a running pod's log ``get_task_log`` returns.
RUNNING_LOG_TAIL_LINES = 1000
LOG_SECTION_MARKER = "----- container log of pod"


def only_in_container_log(container_log: str, log_file: str) -> str:
    """The part of a pod's container log its try's log file lacks.

    A pod copies the try's log to its stdout; where the pod shares the scheduler's log
    folder (the local runtime) the file already holds that copy, and only the runner's
    lines around it are new. On a cluster the file is empty here and all of it is new.
    """
    if log_file and log_file in container_log:
        return container_log.replace(log_file, "", 1)
    if container_log in log_file:
        return ""
    return container_log


class PodLogs:
    """Reads and keeps the container logs of the executor's pods (see the module docstring)."""

    core: "client.CoreV1Api | None"
    _records: dict["TaskInstanceKey", PodRecord]

    def _read_pod_log(self, name: str, namespace: str, *, tail_lines: int | None = None) -> str | None:
        kwargs: dict[str, Any] = {"container": BASE_CONTAINER_NAME, "_preload_content": False}
        if tail_lines:
            kwargs["tail_lines"] = tail_lines
        try:
            response = self.core.read_namespaced_pod_log(name, namespace, **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            self.log.warning("could not read the log of pod %s: %s", name, getattr(exc, "reason", exc))
            return None
        return response.data.decode("utf-8", "replace")

    def _save_log(self, record: PodRecord) -> str | None:
        """Copy the pod's container log into the try's log file (the pod may be deleted next)."""
        text = self._read_pod_log(record.name, record.namespace)
        if not text:
            return text
        path = task_log_path_for_key(record.key)
        try:
            existing = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
            added = only_in_container_log(text, existing)
            if not added.strip():
                return text
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                if existing and not existing.endswith("\n"):
                    handle.write("\n")
                handle.write(f"{LOG_SECTION_MARKER} {record.namespace}/{record.name} -----\n")
                handle.write(added if added.endswith("\n") else added + "\n")
        except OSError as exc:
            self.log.warning("could not save the log of pod %s to %s: %s", record.name, path, exc)
        return text

    def get_task_log(self, ti: "TaskInstance", try_number: int) -> tuple[list[str], list[str]]:
        """The live pod's log while it runs, else the saved log file."""
        key = ti.key.with_try_number(try_number)
        record = self._records.get(key)
        if record is not None and record.created and self.core is not None:
            text = self._read_pod_log(record.name, record.namespace, tail_lines=RUNNING_LOG_TAIL_LINES)
            if text is not None:
                return [f"log of running pod {record.namespace}/{record.name}"], text.splitlines()
        path = task_log_path_for_key(key)
        if path.exists():
            return [f"log file {path}"], path.read_text(encoding="utf-8", errors="replace").splitlines()
        return [f"no log found for try {try_number} (no pod, no file at {path})"], []
