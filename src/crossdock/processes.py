"""Small process-control helpers shared by the runner, the executors and the pod runtime.

Each tolerates the race every caller has: the process or group may end between the
moment it is looked up and the moment it is signalled. The module uses the standard
library only and imports nothing of crossdock: the pod shim, which runs without
site-packages, loads this file directly.
"""

from __future__ import annotations

import os
import signal
from typing import Callable


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to a process group; a group that is already gone is not an error."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_zero(send: Callable[[int, int], None], target: int) -> bool | None:
    """Send signal 0: False when ``target`` is gone, None when it exists but is not ours to signal."""
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return None
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists (one we may not signal counts)."""
    return _signal_zero(os.killpg, pgid) is not False


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie counts as gone (and is reaped when it is our child)."""
    reached = _signal_zero(os.kill, pid)
    if reached is not True:
        return reached is None
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z"
    except OSError:
        return False


def proc_table():
    """(pid, ppid, pgid, start time in clock ticks since boot) of every process, from /proc (Linux)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # Fields after the parenthesised command name start at field 3 (state):
        # ppid is field 4, pgrp 5, starttime 22.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) >= 20:
            yield int(entry), int(fields[1]), int(fields[2]), int(fields[19])


def describe_exit(code: int | None) -> str:
    """How a child ended, for a message: ``killed by signal SIGKILL`` (``code`` -9) or ``exited with code 3``.

    ``code`` is what :mod:`subprocess` reports: negative ``-N`` for a process killed by signal ``N``.
    """
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"killed by signal {name}"
    return f"exited with code {code}"


def group_members(pgid: int) -> list[int]:
    """Every process of the group (children a shell started included), from one /proc scan (Linux)."""
    return [pid for pid, _ppid, group, _start in proc_table() if group == pgid]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` in the process tree, from one /proc scan (Linux).

    Processes that left the tree (a double fork, a parent that died and had them
    re-parented to init) are not found: take the snapshot while the tree is whole.
    """
    children: dict[int, list[int]] = {}
    for child, parent, _pgid, _start in proc_table():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


#: ``prctl`` option that asks the kernel for a signal when the parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1
#: Exit code of a child whose parent was gone before it could tie itself to it.
EXIT_PARENT_GONE = 129


def _libc_prctl():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


#: Threads (by ident) that live as long as the process: see :func:`mark_thread_lasting`.
_LASTING_THREADS: set[int] = set()


def mark_thread_lasting() -> None:
    """Declare that the calling thread lives as long as the process (a daemon loop that never returns).

    :func:`exit_with_parent` then ties the children it starts, as it does the main thread's:
    the kernel's parent-death signal follows the forking thread, and this one ends only
    with the process.
    """
    import threading

    _LASTING_THREADS.add(threading.get_ident())


def exit_with_parent(signum: int = 9):
    """A ``preexec_fn`` that makes the child get ``signum`` (default SIGKILL) when this process dies.

    It is what keeps a helper process (an embedded Celery worker, say) from outliving its
    starter, however the starter ends — SIGKILL included, when no cleanup code runs. The
    kernel ties the signal to the *thread* that forked the child, so a child started from
    any thread but the main one, or one marked with :func:`mark_thread_lasting`, is not
    tied (``None`` is returned: the thread may end long before the process). Right after
    ``prctl`` the child checks that its parent is still the starter: one that died in
    between would never send the signal.
    Returns ``None`` where ``prctl`` does not exist (not Linux).
    """
    import threading

    lasting = threading.current_thread() is threading.main_thread() or threading.get_ident() in _LASTING_THREADS
    if not lasting:
        return None
    prctl = _libc_prctl()  # looked up here: the child must not load libraries between fork and exec
    if prctl is None:
        return None
    parent = os.getpid()

    def tie_to_parent() -> None:
        prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(EXIT_PARENT_GONE)

    return tie_to_parent
