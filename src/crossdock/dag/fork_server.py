"""The fork server that parses a DAG folder quickly without forking the caller.

One scan of the DAG folder starts ``python -m crossdock.dag.fork_server``: a fresh,
single-threaded interpreter that imports and warms up crossdock's parsing code once,
then forks one child per DAG file. Each child calls setsid (so the caller
can kill it with everything it started), imports the file, and writes its JSON result
to a file the caller named. The caller enforces the timeouts; the server only forks
children and reports their pids and exit codes.

Protocol, one line each: the caller writes the JSON list ``[id, path, result path]``;
the server answers ``ready`` once, then ``started <id> <pid>`` and ``exited <pid> <code>``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from crossdock.dag.processor import (
    KILL_WAIT_SECONDS,
    Outcome,
    child_environment,
    exit_description,
    kill_group,
    parse_payload,
)
from crossdock.exceptions import CrossdockError

#: Seconds the server may take to start before the scan falls back to one
#: interpreter per file.
SERVER_START_TIMEOUT = 30.0
#: Exit code of a forked child that failed outside the DAG file's own code.
CHILD_FAILURE_CODE = 70


class _ServerGone(CrossdockError):
    """The fork server exited or stopped answering."""


@dataclass
class _Job:
    path: str
    result_path: str
    deadline: float
    pid: int | None = None


def _send(line: str) -> None:
    os.write(1, (line + "\n").encode("utf-8"))


def _serve() -> None:
    """Fork server: read ``[id, path, result_path]`` lines, fork a parser for each.

    Reports ``started <id> <pid>`` and ``exited <pid> <exit code>`` lines on stdout;
    the forked child writes its JSON result to ``result_path``. Ends at end of input.
    """
    import crossdock.dag  # noqa: F401 - preloaded once, shared by every fork
    import crossdock.dag.loader  # noqa: F401
    import crossdock.dag.serialization  # noqa: F401

    _warm_up()

    def reap(_signum: int, _frame: object) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            _send(f"exited {pid} {os.waitstatus_to_exitcode(status)}")

    signal.signal(signal.SIGCHLD, reap)
    _send("ready")
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            break
        request_id, path, result_path = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _forked_child(path, result_path)
        _send(f"started {request_id} {pid}")
    os._exit(0)


def _warm_up() -> None:
    """Run crossdock's own parsing code once, so every fork starts with it warm.

    First use of the configuration, croniter and the serializer costs about ten
    times a warm parse; doing it here, before any fork, pays it once per scan. No user
    code runs in the fork server.
    """
    from datetime import datetime

    from crossdock.dag import DAG, BashOperator, PythonOperator
    from crossdock.dag.loader import _add_dags_folder_to_path
    from crossdock.dag.serialization import dag_hash, serialize_dag

    _add_dags_folder_to_path()
    dag = DAG("crossdock_warm_up", schedule="*/5 * * * *", start_date=datetime(2024, 1, 1))
    first = BashOperator("first", "true", dag=dag)
    first >> PythonOperator("second", print, dag=dag)
    dag.validate()
    dag_hash(json.loads(json.dumps(serialize_dag(dag))))


def _forked_child(path: str, result_path: str) -> None:
    code = CHILD_FAILURE_CODE
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        payload = parse_payload(path)
        partial = result_path + ".part"
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
        os.replace(partial, result_path)
        code = 0
    finally:
        os._exit(code)


def _read_result(job: _Job, exit_code: int | None) -> Outcome:
    try:
        with open(job.result_path, encoding="utf-8") as handle:
            payload = json.load(handle)
        return payload["dags"], payload["error"]
    except (OSError, ValueError, KeyError, TypeError):
        return [], f"the process parsing this file {exit_description(exit_code)} without a result"


def _read_lines(fd: int, buffer: bytearray, wait: float) -> list[str]:
    import select

    ready, _, _ = select.select([fd], [], [], max(wait, 0.0))
    if not ready:
        return []
    chunk = os.read(fd, 65536)
    if not chunk:
        raise _ServerGone("the fork server exited")
    buffer.extend(chunk)
    *lines, rest = bytes(buffer).split(b"\n")
    buffer[:] = rest
    return [line.decode("utf-8") for line in lines]


def parse_files(files: list[str], *, timeout: float, max_parallel: int) -> dict[str, Outcome]:
    """Outcomes of the files parsed by one fork server; files it could not handle are absent."""
    import tempfile

    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="crossdock-parse-") as folder:
        server = subprocess.Popen(
            [sys.executable, "-m", "crossdock.dag.fork_server"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=child_environment(), start_new_session=True,
        )
        assert server.stdin is not None and server.stdout is not None
        fd = server.stdout.fileno()
        buffer = bytearray()
        jobs: dict[str, _Job] = {}
        by_pid: dict[int, str] = {}
        early_exits: dict[int, int] = {}
        pending = list(enumerate(files))

        def finish(request_id: str, exit_code: int | None) -> None:
            job = jobs.pop(request_id, None)
            if job is None:
                return
            outcomes[job.path] = _read_result(job, exit_code)
            if job.pid is not None:
                kill_group(job.pid)

        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT
            while "ready" not in _read_lines(fd, buffer, deadline - time.monotonic()):
                if time.monotonic() >= deadline:
                    raise _ServerGone("the fork server did not start")
            while pending or jobs:
                while pending and len(jobs) < max_parallel:
                    number, path = pending.pop(0)
                    request_id = str(number)
                    result_path = os.path.join(folder, f"{number}.json")
                    jobs[request_id] = _Job(path, result_path, time.monotonic() + timeout)
                    server.stdin.write(json.dumps([request_id, path, result_path]).encode("utf-8") + b"\n")
                    server.stdin.flush()
                wait = min(job.deadline for job in jobs.values()) - time.monotonic()
                for line in _read_lines(fd, buffer, wait):
                    kind, first, second = line.split(" ")
                    if kind == "started" and first in jobs:
                        jobs[first].pid = int(second)
                        by_pid[int(second)] = first
                        if int(second) in early_exits:
                            finish(first, early_exits.pop(int(second)))
                    elif kind == "started":  # its time ran out before it even started
                        kill_group(int(second))
                    elif kind == "exited":
                        request_id = by_pid.pop(int(first), None)
                        if request_id is None:
                            early_exits[int(first)] = int(second)
                        else:
                            finish(request_id, int(second))
                now = time.monotonic()
                for request_id, job in list(jobs.items()):
                    if job.deadline <= now:
                        if job.pid is not None:
                            kill_group(job.pid)
                        del jobs[request_id]
                        outcomes[job.path] = ([], f"timed out after {timeout:g} s")
        except (_ServerGone, OSError, ValueError):
            for job in jobs.values():
                if job.pid is not None:
                    kill_group(job.pid)
        finally:
            try:
                server.stdin.close()
            except OSError:
                pass
            try:
                server.wait(timeout=KILL_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                kill_group(server.pid)
                server.wait()
            server.stdout.close()
    return outcomes


if __name__ == "__main__":
    _serve()
