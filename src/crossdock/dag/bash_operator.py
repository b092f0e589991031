"""BashOperator: run a shell command as a task.

The command runs in its own process group, so when the try is interrupted (timeout,
kill) the whole group is stopped: nothing the command started keeps running after its
task is over.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any, Collection, Mapping

from crossdock.dag.baseoperator import BaseOperator
from crossdock.dag.exceptions import AirflowSkipException, TaskFailure
from crossdock.dag.xcom_arg import XComArg
from crossdock.processes import group_alive, signal_group

log = logging.getLogger("crossdock.task")

#: Seconds the command gets to exit after SIGTERM before the group is sent SIGKILL.
TERMINATE_GRACE_SECONDS = 5.0
#: The shell that runs ``bash_command``.
BASH = "bash"
#: Prefix of the environment variables describing the running task.
CONTEXT_ENV_PREFIX = "CROSSDOCK_CTX_"


def _context_env(context: Mapping[str, Any]) -> dict[str, str]:
    """Task identity for the command, like Airflow's ``AIRFLOW_CTX_*`` variables."""
    env = {}
    for key in ("dag_id", "task_id", "run_id", "try_number", "map_index"):
        if context.get(key) is not None:
            env[f"{CONTEXT_ENV_PREFIX}{key.upper()}"] = str(context[key])
    if context.get("logical_date") is not None:
        env[f"{CONTEXT_ENV_PREFIX}LOGICAL_DATE"] = context["logical_date"].isoformat()
    return env


def _fileno(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


class BashOperator(BaseOperator):
    """Run ``bash -c bash_command``; a non-zero exit code fails the try.

    With ``do_xcom_push`` (the default, as Airflow's) the command's output (stdout and
    stderr, merged) is copied into the task log line by line and its last line is the
    task's ``return_value``.

    :param bash_command: the command line.
    :param env: environment variables for the command.
    :param append_env: add ``env`` to the worker's environment (True) or use ``env`` alone.
    :param cwd: working directory; default a fresh process's current directory.
    :param skip_on_exit_code: exit code(s) that end the try as skipped (Airflow's default 99).

    ``bash_command``, ``env`` (its values) and ``cwd`` are templates; a ``bash_command``
    ending in ``.sh`` or ``.bash`` names a script file whose content is rendered.
    """

    template_fields = ("bash_command", "env", "cwd")
    template_ext = (".sh", ".bash")

    def __init__(self, task_id: str, bash_command: str | None = None, *,
                 env: Mapping[str, str] | None = None, append_env: bool = True,
                 cwd: str | None = None, skip_on_exit_code: int | Collection[int] | None = 99,
                 **kwargs: Any):
        super().__init__(task_id, **kwargs)
        if not isinstance(bash_command, XComArg) and (not isinstance(bash_command, str) or not bash_command.strip()):
            raise self._definition_error(f"bash_command must be a non-empty string, not {bash_command!r}")
        if env is not None and not isinstance(env, Mapping):
            raise self._definition_error("env must be a dict of strings")
        self.bash_command = bash_command
        self.env = dict(env) if env is not None else None
        self.append_env = append_env
        self.cwd = cwd
        codes = () if skip_on_exit_code is None else (
            (skip_on_exit_code,) if isinstance(skip_on_exit_code, int) else tuple(skip_on_exit_code))
        if not all(isinstance(code, int) and not isinstance(code, bool) for code in codes):
            raise self._definition_error(f"skip_on_exit_code must be exit codes, not {skip_on_exit_code!r}")
        self.skip_on_exit_code: tuple[int, ...] = codes
        self._process: Any = None  # subprocess.Popen while running

    def _environment(self, context: Mapping[str, Any]) -> dict[str, str]:
        if self.env is None or self.append_env:
            env = dict(os.environ)
            env.update(self.env or {})
        else:
            env = dict(self.env)
        env.update(_context_env(context))
        return {str(key): str(value) for key, value in env.items()}

    def execute(self, context: dict[str, Any]) -> str | None:
        if self.cwd is not None and not os.path.isdir(self.cwd):
            raise TaskFailure(f"cwd {self.cwd!r} of task {self.task_id!r} is not a directory")
        out, err = _fileno(sys.stdout), _fileno(sys.stderr)
        piped = out is None or err is None or self.do_xcom_push
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        import subprocess

        log.info("Running command: %s", self.bash_command)
        self._process = subprocess.Popen(
            [BASH, "-c", self.bash_command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if piped else out,
            stderr=subprocess.STDOUT if piped else err,
            env=self._environment(context),
            cwd=self.cwd,
            start_new_session=True,
            text=piped,
        )
        last_line = ""
        try:
            if piped:
                # The last line is the pushed value, or sys.stdout is not a real file
                # (captured by a test): copy the output so it still lands in the task log.
                assert self._process.stdout is not None
                for line in self._process.stdout:
                    sys.stdout.write(line)
                    last_line = line
                sys.stdout.flush()
            code = self._process.wait()
        except BaseException:
            self.on_kill()
            raise
        finally:
            if self._process.stdout is not None:
                self._process.stdout.close()
        log.info("Command exited with return code %s", code)
        if code in self.skip_on_exit_code:
            raise AirflowSkipException(f"bash command exited with code {code}, which skips the task "
                                       f"(skip_on_exit_code)")
        if code != 0:
            raise TaskFailure(f"bash command exited with code {code}")
        return last_line.rstrip("\n") if piped else None

    def on_kill(self) -> None:
        """Stop the command's whole process group: SIGTERM, then SIGKILL after a grace period."""
        process = self._process
        if process is None or process.poll() is not None and not group_alive(process.pid):
            return
        import subprocess

        signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=TERMINATE_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        signal_group(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=TERMINATE_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("process %s did not exit after SIGKILL", process.pid)

