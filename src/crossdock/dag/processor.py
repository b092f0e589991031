"""The DAG-folder processor: parse DAG files in child processes, never in the caller.

User code must never run in the scheduler: a DAG file can hang, crash, leak memory or
call ``sys.exit``. Every file is imported in a child process of its own, in its own
process group; a child that overruns the timeout is killed with its whole group and
the file gets the import error "timed out after N s".

Two kinds of child, same result:

* :func:`parse_dag_folder` starts one fork server per folder scan
  (:mod:`crossdock.dag.fork_server`): a fresh interpreter that imports the authoring
  API once and forks a child per file. A fork of that small, single-threaded process
  costs a few milliseconds, where a new interpreter costs tens. The scheduler itself
  is never forked: it holds threads (executor watchers, database pools) that a fork
  would copy in an unknown state.
* :func:`parse_dag_file`, and the folder scan if the fork server cannot start, run
  ``python -m crossdock.dag.processor FILE``, which prints one JSON result.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossdock.processes import describe_exit

log = logging.getLogger(__name__)

#: How many files are parsed at once by default.
DEFAULT_MAX_PARALLEL = 2
#: Seconds to wait for a killed child, or a closing fork server, to go away.
KILL_WAIT_SECONDS = 5.0
#: How much of a crashed child's stderr is kept in its import error.
STDERR_TAIL_CHARS = 2000

Outcome = tuple[list[dict[str, Any]], "str | None"]


@dataclass
class ParseResult:
    """What one parse of some DAG files produced.

    ``complete`` is True when every DAG file of the configured folders was parsed, so
    a DAG missing from ``dags`` (and not from a file that failed) no longer exists.
    """

    dags: list[dict[str, Any]] = field(default_factory=list)
    import_errors: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    duration: float = 0.0
    complete: bool = False

    @property
    def dag_ids(self) -> list[str]:
        return [dag["dag_id"] for dag in self.dags]


# -- what every child does ---------------------------------------------------------
def parse_payload(path: str) -> dict[str, Any]:
    """``{"dags": [...], "error": None | str}`` for one file, parsed in this process."""
    from crossdock.dag.exceptions import DagDefinitionError, DagFileError
    from crossdock.dag.loader import load_dags_from_file
    from crossdock.dag.param import check_dag_params
    from crossdock.dag.template_check import check_dag_templates
    from crossdock.dag.serialization import serialize_dag

    try:
        dags = load_dags_from_file(path)
        for dag in dags.values():
            check_task_executors(dag)
            check_pod_overrides(dag)
            check_dag_params(dag)
            check_dag_templates(dag)
        return {"dags": [serialize_dag(dag) for dag in dags.values()], "error": None}
    except DagFileError as exc:
        return {"dags": [], "error": exc.message}
    except DagDefinitionError as exc:
        return {"dags": [], "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # noqa: BLE001 - any failure becomes the file's import error
        return {"dags": [], "error": f"cannot serialize the DAGs of this file: {type(exc).__name__}: {exc}"}


def check_task_executors(dag) -> None:
    """A task naming an executor that ``[core] executor`` does not configure fails the parse.

    Checked here, with the scheduler's configuration, rather than when a worker loads the
    file: workers may be configured differently and only the scheduler routes.
    """
    from crossdock.dag.exceptions import DagDefinitionError
    from crossdock.executor_names import known_executor_names

    names = None
    for task in dag.tasks:
        if task.executor is None:
            continue
        names = names if names is not None else known_executor_names()
        if task.executor not in names:
            raise DagDefinitionError(
                f"DAG {dag.dag_id!r}: task {task.task_id!r} names executor {task.executor!r}, which is not "
                f"configured in [core] executor (configured: {', '.join(sorted(names))})")


def check_pod_overrides(dag) -> None:
    """A ``pod_override`` no API server would accept fails the parse, naming the task and the field.

    Found here rather than when the task runs: a bad quantity or an integer label would
    otherwise fail each try of the task, or leave its pod waiting.
    """
    from crossdock.dag.exceptions import DagDefinitionError

    tasks = [task for task in dag.tasks if isinstance(task.executor_config, dict)
             and task.executor_config.get("pod_override") is not None]
    if not tasks:
        return  # the Kubernetes client is slow to import: only for DAGs that use it
    from crossdock.kubernetes.pod_generator import PodOverrideError, check_pod_override

    for task in tasks:
        try:
            check_pod_override(task.executor_config["pod_override"])
        except PodOverrideError as exc:
            raise DagDefinitionError(f"DAG {dag.dag_id!r}: task {task.task_id!r}: invalid {exc}") from None


def exit_description(code: int | None) -> str:
    """How the parsing process ended, worded to follow "the process parsing this file"."""
    return f"was {describe_exit(code)}" if code is not None and code < 0 else describe_exit(code)


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (and ``pid`` itself, should it have none yet)."""
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        try:
            kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def child_environment() -> dict[str, str]:
    """The caller's environment, plus the path crossdock itself was imported from."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent.parent)
    current = env.get("PYTHONPATH")
    parts = current.split(os.pathsep) if current else []
    if package_root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([package_root, *parts])
    return env


def _resolve_timeout(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    from crossdock.configuration import conf

    return conf.getfloat("core", "dagbag_import_timeout")


# -- one interpreter per file ------------------------------------------------------
def _parse_in_interpreter(path: str, *, timeout: float) -> Outcome:
    """Parse ``path`` in ``python -m crossdock.dag.processor FILE``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "crossdock.dag.processor", path],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=child_environment(), start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process.pid)
        try:
            process.communicate(timeout=KILL_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        return [], f"timed out after {timeout:g} s"
    finally:
        # Whatever the file started and left behind dies with the parse.
        kill_group(process.pid)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    try:
        payload = json.loads(out.decode("utf-8"))
        return payload["dags"], payload["error"]
    except (ValueError, KeyError, TypeError):
        tail = err.decode("utf-8", "replace")[-STDERR_TAIL_CHARS:].strip()
        message = f"the process parsing this file {exit_description(process.returncode)} without a result"
        return [], f"{message}\n{tail}" if tail else message


def _interpreter_main(path: str) -> None:
    """Child side of :func:`_parse_in_interpreter`: the JSON result goes to the real stdout.

    Whatever the DAG file prints goes to stderr, so it cannot corrupt the result.
    """
    result_fd = os.dup(1)
    os.dup2(2, 1)
    data = json.dumps(parse_payload(path)).encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(result_fd, view):]
    os.close(result_fd)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # Skip interpreter shutdown: non-daemon threads a DAG file started must not keep
    # the child (and the parse) alive.
    os._exit(0)


# -- public API --------------------------------------------------------------------
def parse_dag_file(path: str | os.PathLike[str], *, timeout: float | None = None) -> ParseResult:
    """Parse one DAG file in a new interpreter (``timeout`` default ``[core] dagbag_import_timeout``)."""
    started = time.monotonic()
    path = os.path.abspath(os.fspath(path))
    dags, error = _parse_in_interpreter(path, timeout=_resolve_timeout(timeout))
    result = ParseResult(dags=dags, files=[path])
    if error is not None:
        result.import_errors[path] = error
    result.duration = time.monotonic() - started
    return result


def parse_dag_folder(folder: str | os.PathLike[str] | None = None, *, timeout: float | None = None,
                     max_parallel: int = DEFAULT_MAX_PARALLEL,
                     include_examples: bool | None = None) -> ParseResult:
    """Parse every DAG file under ``folder`` (default ``[core] dags_folder``), one child each.

    :param timeout: seconds each file may take; default ``[core] dagbag_import_timeout``.
    :param max_parallel: files parsed at the same time.
    :param include_examples: also parse crossdock's example DAGs; default ``[core] load_examples``.

    A DAG id already defined by an earlier file (in path order) is dropped from the
    later file, which gets an import error naming the first one.
    """
    from crossdock.configuration import conf
    from crossdock.dag import fork_server
    from crossdock.dag.loader import EXAMPLE_DAGS_FOLDER, find_dag_file_paths

    started = time.monotonic()
    if folder is None:
        folder = os.path.expanduser(conf.getstr("core", "dags_folder"))
    if include_examples is None:
        include_examples = conf.getboolean("core", "load_examples")
    files = find_dag_file_paths(folder)
    # A missing folder is more often an unmounted volume than deleted DAGs: such a
    # result must not mark every known DAG inactive.
    complete = os.path.exists(folder)
    if not complete:
        log.warning("DAG folder %s does not exist", folder)
    if include_examples:
        files += find_dag_file_paths(EXAMPLE_DAGS_FOLDER)
    limit = _resolve_timeout(timeout)
    parallel = max(1, max_parallel)

    outcomes = fork_server.parse_files(files, timeout=limit, max_parallel=parallel) if files else {}
    leftover = [path for path in files if path not in outcomes]
    if leftover:
        from concurrent.futures import ThreadPoolExecutor

        log.warning("the DAG fork server did not parse %d of %d files; parsing them one "
                    "interpreter each", len(leftover), len(files))
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="dag-parse") as pool:
            for path, outcome in zip(leftover, pool.map(
                    lambda path: _parse_in_interpreter(path, timeout=limit), leftover)):
                outcomes[path] = outcome

    result = ParseResult(files=files, complete=complete)
    owner: dict[str, str] = {}
    for path in files:
        dags, error = outcomes[path]
        problems = [error] if error else []
        for dag in dags:
            first = owner.get(dag["dag_id"])
            if first is not None:
                problems.append(f"DagDefinitionError: DAG id {dag['dag_id']!r} is already defined in {first}")
                continue
            owner[dag["dag_id"]] = path
            result.dags.append(dag)
        if problems:
            result.import_errors[path] = "\n".join(problems)
    result.duration = time.monotonic() - started
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m crossdock.dag.processor DAG_FILE\n")
        sys.exit(2)
    _interpreter_main(sys.argv[1])
