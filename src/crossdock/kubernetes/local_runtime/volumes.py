"""From a container's ``volumeMounts`` to the mounts its private namespace gets, or why it cannot.

Only ``emptyDir`` volumes exist here: a folder per pod volume (``<pod dir>/volumes/<name>``),
made when the pod's container first starts, kept across its restarts and removed with the
pod's folder. ``medium: Memory`` is a tmpfs mounted in the namespace, sized by
``sizeLimit`` when one is given (it lives as long as the container's process; the kernel
enforces the size). A disk volume's ``sizeLimit`` is accepted and not enforced. Other
volume kinds, ``subPathExpr`` and ``Bidirectional`` propagation are refused with a
reason, as a kubelet refuses what it cannot set up.

The namespace needs root or unprivileged user namespaces; with neither, the pod fails
with a message saying so — the task is never run against the host's real mount path.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from crossdock.kubernetes.local_runtime import mount_namespace
from crossdock.kubernetes.local_runtime.launch import ContainerConfigError, LaunchPlan

#: Kernel switches that turn unprivileged user namespaces off (Debian's, and the count limit).
USERNS_SYSCTLS = ("/proc/sys/kernel/unprivileged_userns_clone", "/proc/sys/user/max_user_namespaces")
#: Seconds the one-off probe for user namespaces may take.
PROBE_TIMEOUT = 10.0


def _sysctl_allows(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return int(handle.read().strip() or b"1") > 0
    except (OSError, ValueError):
        return True  # the switch does not exist on this kernel: nothing turns them off


@functools.cache
def userns_available() -> bool:
    """Whether this user may make a user + mount namespace: the sysctls, then a real try in a fresh process."""
    if not all(_sysctl_allows(path) for path in USERNS_SYSCTLS):
        return False
    try:
        probe = subprocess.run([sys.executable, "-I", "-S", mount_namespace.__file__, "--probe"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def namespace_mode(mounts: list[dict[str, Any]], *, euid: int, userns: bool) -> str:
    """``root`` or ``user`` for these mounts, or :class:`ContainerConfigError` saying what is missing.

    Pure on purpose: the agent passes ``os.geteuid()`` and :func:`userns_available`.
    Without root, a missing mount point must be creatable by the agent's user.
    """
    if euid == 0:
        return "root"
    first = mounts[0]
    if not userns:
        raise ContainerConfigError(
            f"emptyDir volume '{first['volume']}' at {first['target']} needs a private mount namespace: "
            f"not root and unprivileged user namespaces are disabled")
    for item in mounts:
        parent = item["target"]
        while not os.path.lexists(parent):
            parent = os.path.dirname(parent)
        if parent != item["target"] and not os.access(parent, os.W_OK | os.X_OK):
            raise ContainerConfigError(
                f"emptyDir volume '{item['volume']}': mount point {item['target']} does not exist and "
                f"cannot be created without root ({parent} is not writable)")
    return "user"


def _clean_relative(path: str, what: str) -> str:
    norm = os.path.normpath(path)
    if os.path.isabs(path) or norm == ".." or norm.startswith("../"):
        raise ContainerConfigError(f"{what} {path!r} must be a relative path inside the volume")
    return "" if norm == "." else norm


def _volume(volumes: dict[str, dict[str, Any]], name: str, container: str) -> dict[str, Any]:
    volume = volumes.get(name)
    if volume is None:
        raise ContainerConfigError(f'container "{container}": volumeMount "{name}" names no volume of the pod')
    if "emptyDir" not in volume or len([k for k, v in volume.items() if k != "name" and v is not None]) != 1:
        kinds = ", ".join(sorted(k for k, v in volume.items() if k != "name" and v is not None)) or "empty"
        raise ContainerConfigError(f'volume "{name}": {kinds} volumes are not supported by the local runtime '
                                   f"(only emptyDir)")
    source = volume["emptyDir"] or {}
    if (source.get("medium") or "") not in ("", "Memory"):
        raise ContainerConfigError(f'volume "{name}": emptyDir medium "{source["medium"]}" is not supported')
    return source


def plan_mounts(pod: dict[str, Any], container: dict[str, Any], *, volumes_dir: str) -> list[dict[str, Any]]:
    """The container's mounts in the form :func:`mount_namespace.mount_volumes` takes."""
    name = container.get("name")
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    mounts = []
    for entry in container.get("volumeMounts") or []:
        volume_name, target = entry.get("name", ""), entry.get("mountPath") or ""
        source = _volume(volumes, volume_name, name)
        if not os.path.isabs(target):
            raise ContainerConfigError(f'container "{name}": mountPath {target!r} must be absolute')
        if entry.get("subPathExpr"):
            raise ContainerConfigError(f'container "{name}": subPathExpr is not supported by the local runtime')
        if entry.get("mountPropagation") == "Bidirectional":
            raise ContainerConfigError(f'container "{name}": Bidirectional mount propagation is not supported')
        volume_dir = os.path.join(volumes_dir, volume_name)
        sub = _clean_relative(entry.get("subPath") or ".", "subPath")
        memory = source.get("medium") == "Memory"
        size = int(parse_quantity(source["sizeLimit"])) if memory and source.get("sizeLimit") else None
        mounts.append({"volume": volume_name, "volumeDir": volume_dir,
                       "source": os.path.join(volume_dir, sub) if sub else volume_dir,
                       "target": os.path.normpath(target), "readOnly": bool(entry.get("readOnly")),
                       "memory": memory, "sizeBytes": size})
    return mounts


def attach(plan: LaunchPlan, pod: dict[str, Any], container: dict[str, Any], *, volumes_dir: str,
           euid: int | None = None, userns: bool | None = None) -> LaunchPlan:
    """Add the container's mounts and namespace mode to its plan (unchanged without mounts).

    ``euid`` and ``userns`` default to this process's (``os.geteuid()``, :func:`userns_available`).
    """
    mounts = plan_mounts(pod, container, volumes_dir=volumes_dir)
    if mounts:
        plan.mounts = mounts
        plan.mount_namespace = namespace_mode(mounts, euid=os.geteuid() if euid is None else euid,
                                              userns=userns_available() if userns is None else userns)
    return plan
