"""The per-pod shim: runs the process, enforces memory, and leaves a verdict on disk."""

from __future__ import annotations

import sys
from pathlib import Path

from crossdock.kubernetes.local_runtime.container import Container
from crossdock.kubernetes.local_runtime.launch import LaunchPlan
from crossdock.kubernetes.local_runtime.log_server import tail_bytes


def _run(tmp_path: Path, argv: list[str], **plan) -> tuple[dict, str]:
    box = Container(tmp_path / "pod", container_name="base")
    box.start(LaunchPlan(argv=argv, env=plan.pop("env", {}), cwd=plan.pop("cwd", None),
                         memory_limit_bytes=plan.pop("memory_limit_bytes", None), nice=0,
                         log_path=str(tmp_path / "pod" / "base.log")))
    result = box.wait(30)
    assert result is not None, "the process did not end"
    return result, box.log_path.read_text()


def test_exit_codes_and_output_are_recorded(tmp_path: Path) -> None:
    result, log = _run(tmp_path, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (result["exitCode"], result["reason"]) == (7, "Error")
    assert log == "out\nerr\n"


def test_success_env_and_created_working_dir(tmp_path: Path) -> None:
    workdir = tmp_path / "made" / "here"
    result, log = _run(tmp_path, ["sh", "-c", 'echo "$X"; pwd'], env={"X": "y"}, cwd=str(workdir))
    assert (result["exitCode"], result["reason"]) == (0, "Completed")
    assert log == f"y\n{workdir}\n"


def test_memory_over_the_limit_is_oom_killed(tmp_path: Path) -> None:
    hog = "import time\nblock = b'x' * (200 * 1024 * 1024)\ntime.sleep(30)"
    result, _ = _run(tmp_path, [sys.executable, "-c", hog], memory_limit_bytes=50 * 1024 * 1024)
    assert (result["exitCode"], result["reason"]) == (137, "OOMKilled")


def test_memory_of_a_shells_children_counts_too(tmp_path: Path) -> None:
    hog = "import time; block = b'x' * (200 * 1024 * 1024); time.sleep(30)"
    result, _ = _run(tmp_path, ["sh", "-c", f'{sys.executable} -c "{hog}"; echo survived'],
                     memory_limit_bytes=50 * 1024 * 1024)
    assert (result["exitCode"], result["reason"]) == (137, "OOMKilled")


def test_missing_executable_is_a_start_error(tmp_path: Path) -> None:
    result, log = _run(tmp_path, ["definitely-not-a-command"])
    assert (result["exitCode"], result["reason"]) == (128, "StartError")
    assert "definitely-not-a-command" in result["message"]


def test_signalled_process_reports_128_plus_signal(tmp_path: Path) -> None:
    result, _ = _run(tmp_path, ["sh", "-c", "kill -TERM $$"])
    assert (result["exitCode"], result["reason"]) == (143, "Error")


def test_tail_reads_last_lines_only(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(10000)))
    assert tail_bytes(log, 2) == b"line 9998\nline 9999\n"
    log.write_bytes(b"a\nb")  # no final newline: the partial line counts
    assert tail_bytes(log, 1) == b"b"
    assert tail_bytes(log, 0) == b""
