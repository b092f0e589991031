"""A container's private mount namespace: its ``emptyDir`` volumes bound at their mount paths.

There are no images and no root filesystems here, so a volume cannot be part of one; it
is a folder of the pod's own (``<pod dir>/volumes/<name>``) bound at the ``mountPath``
inside a mount namespace that only the container's process (and what it starts) lives in.
The host never sees the bind: ``/`` is made recursively private first, so nothing the
namespace mounts propagates back.

Two ways in, chosen by the node agent (see :mod:`.volumes`):

* ``root`` — the agent runs as root: ``unshare(CLONE_NEWNS)`` and mount.
* ``user`` — it does not: ``unshare(CLONE_NEWUSER | CLONE_NEWNS)`` with the agent's own
  uid and gid mapped to themselves, so the process keeps its identity (and, after
  ``exec``, no capabilities) while the namespace it owns may mount.

Everything runs in the forked child before ``exec`` (``preexec_fn``), through libc via
:mod:`ctypes` (``os.unshare`` is Python 3.12+). Standard library only: the shim loads this
file without the crossdock package on its path. ``python mount_namespace.py --probe``
exits 0 when an unprivileged user may make such a namespace here.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
#: Flags a read-only remount must keep: in a user namespace the kernel refuses to drop them.
_KEPT_FLAGS = ((os.ST_NOSUID, 0x2), (os.ST_NODEV, 0x4), (os.ST_NOEXEC, 0x8),
               (os.ST_NOATIME, 0x400), (os.ST_NODIRATIME, 0x800), (os.ST_RELATIME, 0x200000))
#: Mode of a volume's folder and of a Memory volume's tmpfs, as a kubelet makes an emptyDir.
VOLUME_MODE = 0o777

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.unshare.argtypes = (ctypes.c_int,)


def _check(result: int, what: str) -> None:
    """An ``OSError`` whose message names the call and the path (this module is stdlib-only,
    so it has no crossdock error class to raise)."""
    if result != 0:
        raise OSError(f"{what}: {os.strerror(ctypes.get_errno())}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = (lambda text: None if text is None else text.encode())
    _check(_libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)),
           f"mount {source or fstype or ''} on {target}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def unshare(mode: str) -> None:
    """Enter a new mount namespace (and, for ``user``, a user namespace mapping us to ourselves)."""
    if mode == "user":
        uid, gid = os.geteuid(), os.getegid()
        _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    elif mode == "root":
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    else:
        raise OSError(f"unknown mount namespace mode {mode!r}")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # mount --make-rprivate /: nothing leaks out


def _read_only(target: str) -> None:
    kept = os.statvfs(target).f_flag
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY
    for st_flag, ms_flag in _KEPT_FLAGS:
        if kept & st_flag:
            flags |= ms_flag
    _mount(None, target, None, flags)


def mount_volumes(mounts: list[dict[str, Any]]) -> None:
    """Bind every mount's source at its target, in order; tmpfs first for ``Memory`` volumes.

    A mount is ``{"source", "target", "readOnly", "memory", "sizeBytes"}``. A Memory volume's
    tmpfs is mounted over its source folder (inside this namespace only), so several mounts
    of one volume share it.
    """
    memory_done: set[str] = set()
    for item in mounts:
        source = item["source"]
        if item.get("memory") and item.get("volumeDir") not in memory_done:
            volume_dir = item["volumeDir"]
            size = f",size={item['sizeBytes']}" if item.get("sizeBytes") else ""
            _mount("tmpfs", volume_dir, "tmpfs", 0, f"mode={VOLUME_MODE:o}{size}")
            memory_done.add(volume_dir)
        os.makedirs(source, mode=VOLUME_MODE, exist_ok=True)  # a subPath inside the volume
        _mount(source, item["target"], None, MS_BIND)
        if item.get("readOnly"):
            _read_only(item["target"])


def enter(*, mode: str, mounts: list[dict[str, Any]], cwd: str | None, error_path: str) -> None:
    """The child's side, before ``exec``: namespace, mounts, then the working directory.

    The working directory is made and entered here, after the mounts, because it may lie
    inside a volume. A failure is written to ``error_path`` (``preexec_fn`` exceptions
    reach the parent without their message) and raised.
    """
    try:
        unshare(mode)
        mount_volumes(mounts)
        if cwd:
            os.makedirs(cwd, exist_ok=True)
            os.chdir(cwd)
    except Exception as exc:
        fd = os.open(error_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, str(exc).encode())
        os.close(fd)
        raise


def probe() -> int:
    """0 if this (single-threaded, fresh) process may make a user + mount namespace and mount in it."""
    try:
        unshare("user")
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["--probe"]:
    sys.exit(probe())
