"""Warm pods: a pod profile's key, the warm pod built from a task's pod, and the assignment it waits for.

**Profile key.** Two tries may share a warm pod's *kind* only if their final pods (template
+ ``pod_override`` + the executor's fields, as :func:`~crossdock.kubernetes.pod_generator.construct_pod`
built them) are identical apart from what is the try's own: the pod name, the try's key
labels and annotations, the scheduler job label, and the ``base`` container's task
command (``command``/``args``). :func:`profile_key` hashes everything else - namespace,
image, resources, env, volumes, node selector, service account, tolerations, other
labels and annotations - as canonical JSON, so any difference gives another profile.

**Warm pod.** :func:`warm_pod_from` turns a try's pod into a pod of the same profile that
runs ``python -m crossdock.runner.warm_pod`` instead of the task command. It is labelled
:data:`WARM_LABEL` ``=true`` and with its profile, and learns its own name and namespace
from the downward API (``fieldRef``), as a cluster and the local runtime both provide.

**Assignment.** The executor hands a warm pod its one try by patching the pod: the
:data:`ASSIGNMENT_ANNOTATION` (the full ``crossdock tasks run`` argv as JSON) plus the
try's key labels and annotations, so the pod watcher, adoption and ``cleanup-pods`` see
it as that try's pod from then on. The patch carries the ``metadata.resourceVersion`` of
a version of the pod seen *without* an assignment; the API server refuses (409) a patch
whose resourceVersion is stale, so of two assignments only the first can land, and a
pod never takes a second task (:func:`assignment_patch`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Mapping

from crossdock.kubernetes.pod_generator import (
    ANNOTATION_PREFIX, BASE_CONTAINER_NAME, EXECUTOR_LABEL, KEY_ANNOTATIONS, WORKER_LABEL, key_annotations,
    key_labels, make_pod_name, task_command_fields,
)
from crossdock.models.taskinstancekey import TaskInstanceKey

#: Label every warm pod carries (``cleanup-pods`` and adoption know warm pods by it).
WARM_LABEL = "crossdock.io/warm"
#: Label naming the warm pod's profile (a prefix of the profile key).
PROFILE_LABEL = "crossdock.io/warm-profile"
#: Annotation holding the assigned task command, as a JSON list of strings.
ASSIGNMENT_ANNOTATION = "crossdock.io/assignment"
#: What a warm pod's base container runs until its assignment arrives.
WARM_COMMAND = ("python", "-m", "crossdock.runner.warm_pod")
#: Environment of a warm pod: its own name and namespace (downward API), its idle limit.
POD_NAME_ENV = "CROSSDOCK_POD_NAME"
POD_NAMESPACE_ENV = "CROSSDOCK_POD_NAMESPACE"
IDLE_SECONDS_ENV = "CROSSDOCK_WARM_IDLE_SECONDS"
#: What a warm pod prints on its log once an assignment would reach it; the executor offers it
#: a task only after reading this (:mod:`crossdock.executors.kubernetes_warm_readiness`).
READY_LINE = "crossdock warm pod: ready"
#: Hex digits of the profile key (sha256) used as the key and in labels and names.
PROFILE_KEY_LENGTH = 16
#: Labels the executor sets on every try's pod; not part of a profile.
_TRY_LABELS = frozenset({"dag_id", "task_id", "run_id", "try_number", "map_index", WORKER_LABEL})
_TRY_ANNOTATIONS = frozenset(f"{ANNOTATION_PREFIX}{name}" for name in KEY_ANNOTATIONS)


def _base(pod: Mapping[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c.get("name") == BASE_CONTAINER_NAME)


def profile_of(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The pod without what belongs to one try (see the module docstring); a new dict."""
    shape = copy.deepcopy(dict(pod))
    meta = shape.setdefault("metadata", {})
    meta.pop("name", None)
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k not in _TRY_LABELS}
    meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _TRY_ANNOTATIONS}
    base = _base(shape)
    base.pop("args", None)
    base.pop("command", None)
    return shape


def profile_key(pod: Mapping[str, Any]) -> str:
    """A hash of :func:`profile_of` ``(pod)``: equal for pods that differ only in their try's parts."""
    canonical = json.dumps(profile_of(pod), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:PROFILE_KEY_LENGTH]


def warm_pod_from(task_pod: Mapping[str, Any], *, idle_seconds: float, worker_label: str,
                  entrypoint: list[str] | None = None, service_account: str = "") -> dict[str, Any]:
    """A warm pod of ``task_pod``'s profile, waiting instead of running the try.

    :param idle_seconds: the pod exits by itself after this long without an assignment
        (so a pod whose scheduler died does not wait for ever).
    :param worker_label: the scheduler job label, so this executor's watcher follows it.
    :param entrypoint: the template's own base ``command`` (kept, with the warm command as
        its args), or None when the template has none.
    :param service_account: the service account the pod watches its own object as, its
        token mounted (task pods usually get none: they need no API); empty keeps the task
        pod's own. The profile key stays the task pod's, so the pool does not change.
    """
    key = profile_key(task_pod)
    pod = profile_of(task_pod)
    if service_account:
        pod["spec"].update(serviceAccountName=service_account, automountServiceAccountToken=True)
        pod["spec"].pop("serviceAccount", None)  # the deprecated alias would otherwise contradict it
    meta = pod["metadata"]
    meta["name"] = make_pod_name("warm", key[:8])
    meta["labels"].update({WARM_LABEL: "true", PROFILE_LABEL: key, WORKER_LABEL: worker_label,
                           EXECUTOR_LABEL: "True"})
    base = _base(pod)
    base.update(task_command_fields({"command": entrypoint} if entrypoint else {}, list(WARM_COMMAND)))
    base["env"] = [item for item in base.get("env") or [] if item.get("name") not in
                   (POD_NAME_ENV, POD_NAMESPACE_ENV, IDLE_SECONDS_ENV)] + [
        {"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": POD_NAMESPACE_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": IDLE_SECONDS_ENV, "value": str(idle_seconds)},
    ]
    return pod


def assignment_patch(*, key: TaskInstanceKey, command: list[str], resource_version: str) -> dict[str, Any]:
    """The strategic-merge patch that gives a warm pod its one try (refused if the pod changed since)."""
    return {"metadata": {"resourceVersion": resource_version,
                         "labels": key_labels(key),
                         "annotations": {**key_annotations(key), ASSIGNMENT_ANNOTATION: json.dumps(list(command))}}}


def assignment_of(pod: Mapping[str, Any]) -> list[str] | None:
    """The task command assigned to a warm pod, or None (none yet, or not a list of strings)."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(ASSIGNMENT_ANNOTATION)
    if not raw:
        return None
    try:
        command = json.loads(raw)
    except ValueError:
        return None
    if isinstance(command, list) and command and all(isinstance(part, str) for part in command):
        return command
    return None


def is_warm(pod: Mapping[str, Any]) -> bool:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(WARM_LABEL) == "true"
