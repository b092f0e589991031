"""Small process-control helpers shared by the runner, the executors and the pod runtime.

Each tolerates the race every caller has: the process or group may end between the
moment it is looked up and the moment it is signalled.
"""

from __future__ import annotations

import os


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to a process group; a group that is already gone is not an error."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists (one we may not signal counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie counts as gone (and is reaped when it is our child)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
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
