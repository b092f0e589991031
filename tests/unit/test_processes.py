"""The process helpers: how a child's end is worded, and who belongs to a process group."""

from __future__ import annotations

import signal
import subprocess

from process_helpers import wait_for
from crossdock.processes import describe_exit, group_alive, group_members, pid_alive, signal_group


def test_describe_exit_names_the_signal_or_the_code():
    assert describe_exit(-signal.SIGKILL) == "killed by signal SIGKILL"
    assert describe_exit(-signal.SIGTERM) == "killed by signal SIGTERM"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(None) == "exited with code None"


def test_describe_exit_of_a_signal_without_a_name_gives_its_number():
    assert describe_exit(-200) == "killed by signal 200"


def test_group_members_finds_a_shell_and_its_child_and_nothing_else():
    leader = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], start_new_session=True)
    try:
        assert wait_for(lambda: len(group_members(leader.pid)) >= 2)
        members = group_members(leader.pid)
        assert leader.pid in members
        assert len(members) == 2
        assert all(pid_alive(pid) for pid in members)
        assert group_alive(leader.pid)
    finally:
        signal_group(leader.pid, signal.SIGKILL)
        leader.wait()
    assert not pid_alive(leader.pid)
    signal_group(leader.pid, signal.SIGKILL)  # a group that is gone is not an error
