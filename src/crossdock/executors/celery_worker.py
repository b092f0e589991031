"""The worker side: the one Celery task crossdock sends, and embedded worker processes.

A worker runs a message only if three things hold: the command is a crossdock task
command (anything else is refused and logged, nothing executed), this delivery won the
claim on the Celery task id (so a redelivered message never runs a try twice), and the
command then runs in a fork of the pool process's lean zygote (crossdock's runner and
the DAG files already imported, none of Celery: see :mod:`crossdock.runner.zygote_client`)
or, when configured, in a new interpreter.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from celery import states
from celery.exceptions import Ignore

from crossdock.configuration import conf
from crossdock.executors.celery_claim import claim_task, new_claim_token
from crossdock.executors.celery_claim_keeper import ClaimTakenOver, claim_keeper
from crossdock.executors.celery_protocol import (  # noqa: F401 - re-exported for the worker's readers
    EXECUTE_COMMAND_TASK, CommandFailedError, TaskLostError,
)
from crossdock.processes import signal_group
from crossdock.runner.command import InvalidCommandError, check_command_allowed, is_task_command

log = logging.getLogger("crossdock.executors.celery_worker")

#: Seconds :meth:`EmbeddedWorkers.stop` waits for a warm shutdown before killing.
DEFAULT_STOP_TIMEOUT = 10.0
#: Seconds :func:`start_embedded_workers` waits for the workers to consume.
DEFAULT_READY_TIMEOUT = 60.0


def register_tasks(app: Any) -> Any:
    """Register ``crossdock.execute_command`` on ``app`` and return the task."""
    # The task stores its own outcome (see ClaimKeeper.settle), so Celery stores none on
    # success; it still stores errors raised before or instead of an outcome (a refused
    # command, a lost pool process) and a failure's second, identical copy.
    # A failed try is the try's business, its traceback in the task log: for Celery it is an
    # expected error (``throws``), logged as one INFO line instead of an ERROR and a traceback.
    return app.task(name=EXECUTE_COMMAND_TASK, bind=True, acks_late=app.conf.task_acks_late,
                    track_started=False, ignore_result=True, throws=(CommandFailedError,),
                    store_errors_even_if_ignored=True)(execute_command)


def execute_command(task: Any, command: Sequence[str], signature: str | None = None) -> dict[str, Any]:
    """Run one crossdock task command for the Celery message being processed.

    ``signature`` is checked first when ``[celery] task_signing_key`` is set (see
    :mod:`crossdock.executors.task_signing`), then the command itself; a refusal is
    logged and recorded as the try's failure, and nothing is imported or run.
    """
    task_id = task.request.id
    hostname = task.request.hostname or "unknown-host"
    try:
        from crossdock.executors.task_signing import verify

        verify(task_id, command, signature)
        check_command_allowed(command)
    except InvalidCommandError as exc:
        log.error("celery task %s on %s: %s", task_id, hostname, exc)
        raise
    started_at = time.time()
    token = new_claim_token()
    started = {"hostname": hostname, "pid": os.getpid(), "started_at": started_at, "claim": token,
               "renewed_at": started_at}
    claim = claim_task(task.backend, task_id, meta=started)
    if not claim.won:
        _handle_duplicate_delivery(task, claim, hostname=hostname)
    keeper = claim_keeper(task.backend)
    keeper.hold(task_id, token, started)
    log.info("celery task %s on %s: running %s", task_id, hostname, command)
    try:
        with keeper.stop_on_takeover(task_id):
            result = _run(list(command), key=task_id)
    except ClaimTakenOver:
        log.warning("celery task %s on %s: the try was given up as lost or revoked while it ran here; "
                    "stopped it (it runs, or ran, as a new try elsewhere)", task_id, hostname)
        raise Ignore() from None
    except BaseException:
        keeper.release(task_id)  # Celery records what stopped the try
        raise
    if result.exit_code != 0:
        reason = result.reason or f"exit code {result.exit_code}"
        outcome_state, outcome = states.FAILURE, CommandFailedError(
            f"task command failed on {hostname} (celery task id {task_id}): {reason}")
    else:
        outcome_state, outcome = states.SUCCESS, {
            "exit_code": result.exit_code, "duration": round(result.duration, 3), "started_at": started_at,
            "hostname": hostname, "pid": os.getpid()}
        if getattr(result, "values", None):
            outcome["xcom"] = result.values  # the try's pushed values ride back in its result
    # The keeper stores the outcome over the claim, retrying while the backend is down:
    # Celery's own write would give up, and finished work would be recorded FAILURE and
    # run again.
    if not keeper.settle(task_id, token, outcome_state, outcome):
        raise Ignore()  # decided elsewhere (lost, revoked): nothing more to record
    if outcome_state == states.FAILURE:
        raise outcome
    return outcome


def _run(command: list[str], *, key: str) -> Any:
    from crossdock.runner import fork

    if not is_task_command(command):
        return _run_other_command(command)
    if conf.getboolean("celery", "execute_tasks_new_python_interpreter"):
        return fork.run_command_in_subprocess(command)
    # A fork of this process's lean zygote, which keeps the DAG loaded (once per file
    # version). The zygote dies with this pool process and takes its try along: a
    # revoke(terminate=True) or a killed worker leaves no orphan running a try.
    from crossdock.runner.zygote_client import process_runner

    return process_runner().run(key, command)


def start_task_zygote() -> None:
    """Start this pool process's zygote now, so the first try does not wait for it."""
    if conf.getboolean("celery", "execute_tasks_new_python_interpreter"):
        return
    from crossdock.runner.zygote_client import process_runner

    try:
        process_runner().start()
    except OSError as exc:  # the first try will try again and report the error
        log.warning("could not start the task zygote: %s", exc)


def _run_other_command(command: list[str]) -> Any:
    """A command that is not a crossdock task (allowed only with [core] task_commands_only off)."""
    import subprocess

    from crossdock.runner.fork import ForkResult

    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.stdout:
        log.info("%s printed: %s", command[0], completed.stdout.strip())
    reason = (completed.stderr.strip().splitlines() or [None])[-1] if completed.returncode else None
    return ForkResult(exit_code=completed.returncode, reason=reason, duration=time.monotonic() - started)


def _handle_duplicate_delivery(task: Any, claim: Any, *, hostname: str) -> None:
    """Decide what a delivery that lost the claim does; it never runs the command.

    Finished or revoked: the outcome is already recorded, so the message is dropped.
    Claimed by a worker that still runs it: dropped too, that worker will report. Claimed
    by a worker that is gone (killed while running, message redelivered): the try fails
    with a reason the scheduler shows, and its retry policy decides what comes next.
    """
    task_id = task.request.id
    if claim.state != states.STARTED:
        log.warning("celery task %s on %s: message redelivered but the try is already %s; not running "
                    "it again", task_id, hostname, claim.state)
        raise Ignore()
    owner_host, owner_pid = claim.meta.get("hostname"), claim.meta.get("pid")
    alive = _owner_still_running(task.app, task_id, owner_host=owner_host, owner_pid=owner_pid)
    if alive is None or alive:
        log.warning("celery task %s on %s: message redelivered while %s (pid %s) runs it; not running "
                    "it twice", task_id, hostname, owner_host, owner_pid)
        raise Ignore()
    log.error("celery task %s on %s: the worker that started this try (%s, pid %s) is gone", task_id,
              hostname, owner_host, owner_pid)
    raise TaskLostError(f"worker {owner_host} (pid {owner_pid}) stopped while running this try "
                        f"(celery task id {task_id}); seen by {hostname} when the message was "
                        f"redelivered; the try is not run a second time")


def _owner_still_running(app: Any, task_id: str, *, owner_host: str | None,
                         owner_pid: int | None) -> bool | None:
    """True/False if the claiming worker does/doesn't list the task; None if unknowable."""
    if not owner_host:
        return None
    try:
        replies = app.control.inspect(destination=[owner_host],
                                      timeout=conf.getfloat("celery", "operation_timeout")).active()
    except Exception as exc:  # noqa: BLE001 - no broadcast support: we cannot tell
        log.warning("cannot ask %s about celery task %s: %s", owner_host, task_id, exc)
        return None
    for active in (replies or {}).values():
        for request in active or ():
            if request.get("id") == task_id and (owner_pid is None or request.get("worker_pid") == owner_pid):
                return True
    return False


def warm_up() -> None:
    """Import, once in the worker's main process, what each pool process needs per message.

    The DAG libraries and operators are not among it: tries run in forks of each pool
    process's zygote, which imports those itself (see :mod:`crossdock.runner.zygote_client`).
    """
    import crossdock.runner.zygote_client  # noqa: F401 - imported for its side effect


# -- embedded workers -------------------------------------------------------------------


class EmbeddedWorkers:
    """Worker processes started by this process, e.g. for ``crossdock standalone``.

    Each is a real ``crossdock celery worker`` in its own process group, with this
    process's environment less the metadata database settings (so the same ``CROSSDOCK_HOME``
    and configuration, but no database credentials).
    """

    def __init__(self, processes: list[subprocess.Popen], hostnames: list[str], ready_files: list[Path],
                 pid_files: list[Path]):
        self.processes = processes
        self.hostnames = hostnames
        self._ready_files = ready_files
        self._pid_files = pid_files

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        """Block until every worker consumes its queues; raise if one exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not all(path.exists() for path in self._ready_files):
            for process, name in zip(self.processes, self.hostnames):
                if process.poll() is not None:
                    raise RuntimeError(f"celery worker {name} exited with code {process.returncode} "
                                       f"before it was ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"celery workers {self.hostnames} not ready after {timeout:.0f}s")
            time.sleep(0.05)

    def alive(self) -> bool:
        return all(process.poll() is None for process in self.processes)

    def ready(self) -> bool:
        """Whether every worker consumes its queues now (never waits)."""
        return all(path.exists() for path in self._ready_files)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Warm shutdown (running tasks finish) within ``timeout``, then kill what is left."""
        for process in self.processes:
            if process.poll() is None:
                # Only the main process: it stops consuming and lets running tasks end.
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(process.pid, signal.SIGKILL)
                process.wait()
        for process in self.processes:
            # A task fork leads its own group; killing the worker's group leaves it, so
            # make sure nothing the worker started is still around.
            signal_group(process.pid, signal.SIGKILL)
        for path in [*self._ready_files, *self._pid_files]:
            path.unlink(missing_ok=True)
        for folder in {path.parent for path in self._pid_files}:
            try:
                folder.rmdir()  # the state folder start_embedded_workers made, once empty
            except OSError:
                pass

    def kill(self) -> None:
        """SIGKILL every worker's process group at once (what a crashed machine looks like)."""
        for process in self.processes:
            signal_group(process.pid, signal.SIGKILL)
        for process in self.processes:
            process.wait()

    def __enter__(self) -> "EmbeddedWorkers":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def start_embedded_workers(*, queues: list[str], concurrency: int, count: int = 1,
                           hostname_prefix: str = "embedded", loglevel: str = "WARNING",
                           wait: bool = True, ready_timeout: float = DEFAULT_READY_TIMEOUT,
                           env: dict[str, str] | None = None) -> EmbeddedWorkers:
    """Start ``count`` worker processes consuming ``queues``, each with a pool of ``concurrency``.

    :param hostname_prefix: worker node names are ``{prefix}{i}@{host}``; unique names
        keep ``inspect``/``shutdown`` addressing one worker.
    :param wait: return only once every worker consumes its queues.
    :param env: extra environment variables for the workers (on top of this process's).
    """
    if not queues:
        raise ValueError("start_embedded_workers needs at least one queue")
    from crossdock import processes as process_control

    state_dir = Path(tempfile.mkdtemp(prefix="crossdock-workers-"))
    processes, hostnames, ready_files, pid_files = [], [], [], []
    from crossdock.config_secrets import environment_for_worker

    # A worker never opens the metadata database (design principle 1): its URL stays here.
    child_env = {**environment_for_worker(os.environ), **(env or {})}
    for index in range(count):
        hostname = f"{hostname_prefix}{index}-{os.getpid()}@%h"
        ready_file = state_dir / f"worker{index}.ready"
        pid_file = state_dir / f"worker{index}.pid"
        argv = [sys.executable, "-m", "crossdock.cli.main", "celery", "worker",
                "-q", ",".join(queues), "-c", str(concurrency), "-H", hostname,
                "--pid", str(pid_file), "--ready-file", str(ready_file), "-l", loglevel,
                "--without-mingle", "--without-gossip", "--skip-serve-logs", "--quiet"]
        # Tied to this process: a starter killed outright (SIGKILL) takes its workers along,
        # and their pool processes and zygotes follow them.
        processes.append(subprocess.Popen(argv, env=child_env, start_new_session=True,
                                          preexec_fn=process_control.exit_with_parent()))
        hostnames.append(hostname.replace("%h", _node_host()))
        ready_files.append(ready_file)
        pid_files.append(pid_file)
    workers = EmbeddedWorkers(processes, hostnames, ready_files, pid_files)
    if wait:
        try:
            workers.wait_ready(ready_timeout)
        except BaseException:
            workers.stop(timeout=1.0)
            raise
    return workers


def _node_host() -> str:
    import socket

    return socket.gethostname()
