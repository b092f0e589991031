"""Mount points the runtime had to create on the host, and which pods still use them.

A bind mount needs a directory to land on. When a volume's ``mountPath`` (``/cache``) does
not exist, the shim creates it — an empty directory on the host; what the task writes
goes to the pod's own folder through the namespace's bind, never to it. It must not
outlive the pods that use it, and it must not be removed while another pod still uses
it: removing a directory that is a mount point in another namespace detaches that mount
there. So every pod *claims* its targets here before it starts and releases them when it
ends (the shim) or when its folder is removed (the agent); a directory the runtime made
is removed when the last claim on it goes. Directories that existed before are never
touched. The record is ``<state dir>/mount-points/state.json``, changed under ``flock``.

Standard library only: the shim loads this file without the crossdock package.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

STATE_FILE = "state.json"
LOCK_FILE = "lock"


def registry_for(pod_dir: str | os.PathLike[str]) -> Path:
    """The record for the node a pod folder (``<state dir>/pods/<uid>``) belongs to."""
    return Path(pod_dir).resolve().parent.parent / "mount-points"


@contextmanager
def _locked(registry: Path) -> Iterator[dict]:
    registry.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(registry / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            state = json.loads((registry / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        state.setdefault("created", [])
        state.setdefault("claims", {})
        yield state
        tmp = registry / (STATE_FILE + ".tmp")
        fd_out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd_out, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        os.replace(tmp, registry / STATE_FILE)
    finally:
        os.close(fd)


def _missing_ancestors(target: str) -> list[str]:
    """The directories ``makedirs(target)`` would create, outermost first."""
    missing, path = [], os.path.normpath(target)
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing[::-1]


def claim(registry: Path, pod: str, targets: list[str]) -> None:
    """Make sure every target exists, recording the ones created; raises OSError if one cannot be."""
    with _locked(registry) as state:
        state["claims"][pod] = sorted(set(targets))
        for target in targets:
            for path in _missing_ancestors(target):
                os.mkdir(path, 0o755)
                if path not in state["created"]:
                    state["created"].append(path)


def release(registry: Path, pod: str) -> None:
    """Drop a pod's claims; remove each created directory no remaining claim lies in or under."""
    if not (registry / STATE_FILE).exists():
        return
    with _locked(registry) as state:
        if state["claims"].pop(pod, None) is None:
            return
        in_use = [target for targets in state["claims"].values() for target in targets]
        for path in sorted(state["created"], key=len, reverse=True):
            if any(target == path or target.startswith(path.rstrip("/") + "/") for target in in_use):
                continue
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:  # something else put files there: not ours to delete any more
                pass
            state["created"].remove(path)
