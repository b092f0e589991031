"""``crossdock tasks run`` and ``crossdock tasks test``: run one try of one task.

This is the code every executor ends in: a Celery worker's fork, a Kubernetes pod, a
LocalExecutor child. It loads the DAG file, runs the task with its timeout, writes the
try's log file and reports through its exit code and the last line of stderr. It never
opens the metadata database (design principle 1): the scheduler turns the exit code
into task state.

Exit codes:

* ``0`` the task succeeded;
* ``1`` the task raised, timed out or was terminated;
* ``2`` the command was wrong: bad arguments, DAG file failed to import, DAG or task
  not found. Retrying does not help.

On every failure the last line written to the original stderr is
``crossdock: task failed: <one-line reason>``; executors forward that line as the
failure reason (see :func:`failure_reason_from_stderr`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from crossdock.configuration import ConfigError, conf
from crossdock.dag.exceptions import (
    NO_RETRY_MARK,
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSkipException,
    XComError,
)
from crossdock.dag.xcom_values import XCOM_RETURN_KEY
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import (
    TaskCommand,
    UsageError,
    logical_date_option,
    parse_task_run_arguments,
    read_arguments,
)
from crossdock.runner.context import RuntimeTaskInstance, build_context, logical_date_of, task_hostname
from crossdock.runner.interrupt import (
    DagImportTimeout,
    TaskInterrupted,
    boot_clock,
    execution_timeout,
    kill_child_processes,
    terminate_raises,
    timeout_seconds,
)
from crossdock.runner.callbacks import has_callbacks, run_callbacks, run_end_callbacks
from crossdock.runner.task_log import OutputCapture, log_timestamp, task_log_path, write_all
from crossdock.runner.try_inputs import decode_inputs
from crossdock.runner.try_values import EMPTY_VALUES_LINE, TryValues, values_line

EXIT_SUCCESS = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2

FAILURE_PREFIX = "crossdock: task failed: "
#: A failure reason is one line; a longer message is cut so it fits a log line and a DB column.
MAX_REASON_CHARS = 1000
TEST_RUN_ID_PREFIX = "test__"
TASK_LOG_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"


# -- arguments -------------------------------------------------------------------------
def _parse(argv: Sequence[str], *, test: bool) -> TaskCommand:
    """The try to run: a ``tasks run`` command as it names it (its logical date from the run id
    when it carries none), or a ``tasks test`` try of a fresh ``test__<now>`` run."""
    if not test:
        task_try = parse_task_run_arguments(argv)
        return replace(task_try, logical_date=logical_date_of(task_try))
    args = read_arguments(argv, test=True)
    logical_date = logical_date_option(args.logical_date) or datetime.now(timezone.utc).replace(microsecond=0)
    key = TaskInstanceKey(args.dag_id, args.task_id, f"{TEST_RUN_ID_PREFIX}{logical_date.isoformat()}",
                          1, args.map_index)
    return TaskCommand(key, subdir=args.subdir, logical_date=logical_date)


# -- reasons ---------------------------------------------------------------------------
def one_line(text: str) -> str:
    """A message as one line: its first line, plus its last when they differ (a traceback's
    last line names the error), cut to :data:`MAX_REASON_CHARS`."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0] if len(lines) == 1 or lines[-1] in lines[0] else f"{lines[0]} ... {lines[-1]}"
    if len(line) > MAX_REASON_CHARS:
        line = line[:MAX_REASON_CHARS - 3] + "..."
    return line


def describe_exception(exc: BaseException) -> str:
    """``"ValueError: boom"``: how a task's exception reads as a failure reason."""
    message = one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def failure_reason_from_stderr(text: str | bytes | None) -> str | None:
    """The reason from the runner's ``crossdock: task failed: …`` line, or None.

    The last such line wins: a task may print anything before it.
    """
    if not text:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith(FAILURE_PREFIX):
            return line[len(FAILURE_PREFIX):].strip() or None
    return None


# -- running ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    exit_code: int
    reason: str | None = None
    values: TryValues | None = None


class _ResolveFailure(Exception):
    """The DAG or task could not be loaded; ``reason`` is the one-line failure reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _resolve(task_try: TaskCommand) -> tuple[Any, Any]:
    """The DAG and task of a try; any failure here is a usage-type failure (exit 2)."""
    try:
        from crossdock.dag.exceptions import DagFileError, DagNotFound, TaskNotFound
        from crossdock.dag.loader import get_dag
    except Exception as exc:  # crossdock itself is broken or incomplete
        traceback.print_exc()
        raise _ResolveFailure(f"cannot load the DAG loader: {describe_exception(exc)}") from None
    try:
        with execution_timeout(conf.getfloat("core", "dagbag_import_timeout") or None, error=DagImportTimeout):
            dag = get_dag(task_try.dag_id, subdir=task_try.subdir)
        task = dag.get_task(task_try.task_id)
    except (DagFileError, DagNotFound, TaskNotFound) as exc:
        print(f"crossdock: {exc}", file=sys.stderr)
        raise _ResolveFailure(one_line(str(exc)) or type(exc).__name__) from None
    except TaskInterrupted:
        raise
    except BaseException as exc:
        traceback.print_exc()
        raise _ResolveFailure(f"cannot load DAG {task_try.dag_id!r}: {describe_exception(exc)}") from None
    return dag, task


def _execute(task_try: TaskCommand, *, hostname: str, test_mode: bool = False) -> Outcome:
    """Load and run the task; never raises. Output goes wherever fds 1/2 point now."""
    try:
        dag, task = _resolve(task_try)
    except _ResolveFailure as failure:
        return Outcome(EXIT_USAGE, failure.reason)
    except TaskInterrupted as exc:
        return Outcome(EXIT_TASK_FAILED, exc.reason)

    try:
        inputs = decode_inputs(task_try.inputs) if task_try.inputs else None
    except UsageError as exc:
        return Outcome(EXIT_USAGE, f"bad arguments: {exc}")
    values = TryValues(dag_id=task_try.dag_id, task_id=task_try.task_id, map_index=task_try.map_index,
                       inputs=inputs, dag_task_ids=getattr(dag, "task_dict", {}).keys(),
                       value_limit=conf.getint("core", "max_xcom_size"))
    ti = RuntimeTaskInstance(task_try.key, logical_date=task_try.logical_date, hostname=hostname, values=values)
    context: dict[str, Any] = {}
    outcome, error = _attempt(task, dag, ti, values, inputs, context, test_mode=test_mode)
    if context and has_callbacks(task):
        run_end_callbacks(task, context, outcome, error)
    return outcome


def _attempt(task: Any, dag: Any, ti: RuntimeTaskInstance, values: TryValues, inputs: Any,
             context: dict[str, Any], *, test_mode: bool) -> tuple[Outcome, BaseException | None]:
    """Render and execute the task: its outcome, and the exception that ended it (if any).
    ``context`` is filled in place, so the callbacks see what the task saw."""
    task_started = boot_clock()
    try:
        limit = timeout_seconds(getattr(task, "execution_timeout", None))
        context.update(build_context(dag=dag, task=task, ti=ti, test_mode=test_mode, inputs=inputs))
        from crossdock.runner.templating import render_template_fields  # needs crossdock.dag, loaded by now

        if hasattr(task, "unmap"):  # a mapped task: this try runs the operator for its element
            task = context["task"] = task.unmap(context)
        render_template_fields(task, context)  # a failure to render is the try's failure
        if has_callbacks(task):
            run_callbacks(task, "on_execute_callback", context)
        with execution_timeout(limit):
            result = task.execute(context)
        push_result(task, values, result)
    except TaskInterrupted as exc:
        print(f"crossdock: {exc.reason}", file=sys.stderr)
        leftovers = kill_child_processes(started_after=task_started)
        if leftovers:
            print(f"crossdock: killed leftover child processes {leftovers}", file=sys.stderr)
        return Outcome(EXIT_TASK_FAILED, exc.reason), exc
    except SystemExit as exc:
        if exc.code in (None, 0):
            return Outcome(EXIT_SUCCESS, values=values), None
        print(f"crossdock: task called sys.exit({exc.code!r})", file=sys.stderr)
        return Outcome(EXIT_TASK_FAILED, f"task exited with {exc.code!r}"), exc
    except AirflowRescheduleException as exc:  # a sensor gives its slot back until its next poke
        values.reschedule(exc.reschedule_date, exc.first_poke)
        return Outcome(EXIT_SUCCESS, values=values), exc
    except AirflowSkipException as exc:
        reason = one_line(str(exc)) or "the task skipped itself"
        print(f"crossdock: skipped: {reason}", file=sys.stderr)
        values.mark_skipped(reason)
        return Outcome(EXIT_SUCCESS, values=values), exc
    except AirflowFailException as exc:
        reason = f"{one_line(str(exc)) or type(exc).__name__} {NO_RETRY_MARK}"
        print(f"crossdock: {reason}", file=sys.stderr)
        return Outcome(EXIT_TASK_FAILED, reason), exc
    except BaseException as exc:
        if _is_task_failure(exc):  # an expected failure: its message says it all
            reason = one_line(str(exc)) or type(exc).__name__
            print(f"crossdock: {reason}", file=sys.stderr)
            return Outcome(EXIT_TASK_FAILED, reason), exc
        _print_task_traceback(exc)
        return Outcome(EXIT_TASK_FAILED, describe_exception(exc)), exc
    return Outcome(EXIT_SUCCESS, values=values), None


def push_result(task: Any, values: TryValues, result: Any) -> None:
    """Push what ``execute`` returned, as Airflow does: ``return_value``, and each key of a
    dict when the task has ``multiple_outputs``; nothing for None or ``do_xcom_push=False``."""
    if result is None or not getattr(task, "do_xcom_push", True):
        return
    if getattr(task, "multiple_outputs", False):
        if not isinstance(result, dict):
            raise XComError(f"task {task.task_id!r} has multiple_outputs=True and returned "
                            f"{type(result).__name__}, not a dict")
        for key, value in result.items():
            if not isinstance(key, str):
                raise XComError(f"task {task.task_id!r} has multiple_outputs=True and returned a dict "
                                f"with key {key!r}; its keys must be strings")
            values.push(key, value)
    values.push(XCOM_RETURN_KEY, result)


def _print_task_traceback(exc: BaseException) -> None:
    """The traceback from the task's code down: the runner's own frames are noise to a reader."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)


def _is_task_failure(exc: BaseException) -> bool:
    failure = getattr(sys.modules.get("crossdock.dag.exceptions"), "TaskFailure", None)
    return failure is not None and isinstance(exc, failure)


def _run(task_try: TaskCommand, *, mode: str) -> int:
    """Run a try with its header and outcome lines; ``mode`` is "log" or "console"."""
    hostname = task_hostname()
    started = time.monotonic()
    capture: OutputCapture | None = None
    log_path: Path | None = None
    if mode == "log":
        log_path = task_log_path(dag_id=task_try.dag_id, task_id=task_try.task_id, run_id=task_try.run_id,
                                 try_number=task_try.try_number, map_index=task_try.map_index)
        try:
            capture = OutputCapture(log_path, tee=conf.getboolean("logging", "task_log_to_stdout")).start()
        except OSError as exc:
            return _report_failure(None, f"cannot open log file {log_path}: {exc.strerror or exc}",
                                   EXIT_TASK_FAILED)
    restore_logging = _configure_task_logging()
    try:
        with terminate_raises():
            try:
                _header(task_try, hostname=hostname, log_path=log_path)
                outcome = _execute(task_try, hostname=hostname, test_mode=mode == "console")
            except TaskInterrupted as exc:  # a signal between the task's end and here
                outcome = Outcome(EXIT_TASK_FAILED, exc.reason)
            elapsed = time.monotonic() - started
            try:
                ended = outcome.values.outcome.get("state") if outcome.values is not None else None
                if ended == "skipped":
                    _say(f"task skipped in {elapsed:.3f}s: {outcome.values.outcome['reason']}")
                elif ended == "up_for_reschedule":
                    _say(f"task rescheduled to {outcome.values.outcome['reschedule_at']} after {elapsed:.3f}s")
                elif outcome.exit_code == EXIT_SUCCESS:
                    _say(f"task succeeded in {elapsed:.3f}s")
                else:
                    _say(f"task failed in {elapsed:.3f}s: {outcome.reason}")
            except TaskInterrupted:  # the try is over; a late signal changes nothing
                pass
    finally:
        restore_logging()
        if capture is not None:
            capture.restore()
    if outcome.exit_code == EXIT_SUCCESS:
        line = values_line(outcome.values) or (EMPTY_VALUES_LINE if capture is not None and capture.tee else None)
        if line:  # last on stderr, as a failure line would be: the executor reads it from there.
            # Where the task's output shares that stream (tee), one is always written, so a
            # line the task printed is never taken for the runner's.
            write_all(2, line.encode("utf-8"))
        return EXIT_SUCCESS
    return _report_failure(log_path, outcome.reason, outcome.exit_code)


def _report_failure(log_path: Path | None, reason: str | None, exit_code: int) -> int:
    """Write the failure line, last, on stderr (fd 2, past any Python-level buffering).

    The reason becomes the try's failure reason in the database and the UI, so the
    secrets the try read are masked in it.
    """
    from crossdock.secrets.masking import redact

    try:
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    lines = []
    if log_path is not None:
        lines.append(f"crossdock: task log: {log_path}\n")
    lines.append(f"{FAILURE_PREFIX}{one_line(redact(reason or '')) or 'unknown error'}\n")
    write_all(2, "".join(lines).encode("utf-8", "replace"))
    return exit_code


def _header(task_try: TaskCommand, *, hostname: str, log_path: Path | None) -> None:
    map_part = f" map_index={task_try.map_index}" if task_try.map_index >= 0 else ""
    _say(f"running dag_id={task_try.dag_id} task_id={task_try.task_id} run_id={task_try.run_id}"
         f"{map_part} try_number={task_try.try_number}")
    _say(f"host={hostname} pid={os.getpid()} started={datetime.now(timezone.utc).isoformat()}"
         + (f" log={log_path}" if log_path else ""))


def _say(message: str) -> None:
    """A runner line in the task's output (stderr, so it interleaves with the task's)."""
    print(f"[{log_timestamp()}] crossdock: {message}", file=sys.stderr, flush=True)


def _configure_task_logging():
    """Send the task's ``logging`` records to its output; return the undo function.

    The root handlers of a forked parent (a worker's, a scheduler's) point at that
    parent's files; a task's records belong in the task's own log. Secrets the task
    reads (connection passwords, secret Variables) are masked in its records and, once
    one is read, in what it writes through ``sys.stdout``/``sys.stderr``.
    """
    from crossdock.secrets.masking import RedactingFilter, redact_std_streams

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(TASK_LOG_FORMAT))
    handler.addFilter(RedactingFilter())
    root.handlers = [handler]
    _set_level(root, task_logging_level())
    plain_streams = redact_std_streams()

    def restore() -> None:
        plain_streams()
        handler.flush()
        root.handlers = saved_handlers
        _set_level(root, saved_level)

    return restore


def task_logging_level() -> int:
    """``[logging] logging_level`` as a number; INFO when it is not a level name."""
    try:
        level = logging.getLevelName(conf.getstr("logging", "logging_level").upper())
    except ConfigError:
        return logging.INFO
    return level if isinstance(level, int) else logging.INFO


def _set_level(logger: logging.Logger, level: int) -> None:
    # setLevel clears the cache of every logger there is, even for the same level.
    if logger.level != level:
        logger.setLevel(level)


def run_task(argv: Sequence[str]) -> int:
    """``crossdock tasks run DAG_ID TASK_ID RUN_ID --try-number N [...]``; returns the exit code.

    ``argv`` is what follows ``crossdock tasks run``. Output of the task (and of every
    process it starts) goes to the try's log file.
    """
    return _parse_and_run(argv, test=False)


def run_task_test(argv: Sequence[str]) -> int:
    """``crossdock tasks test DAG_ID TASK_ID [--subdir PATH]``: run in the foreground.

    Output stays on the console, no log file is written, the try number is 1 and the
    run id is ``test__<now>``. Exit codes are those of :func:`run_task`.
    """
    return _parse_and_run(argv, test=True)


def _parse_and_run(argv: Sequence[str], *, test: bool) -> int:
    """Both commands' way from argv to exit code: a bad command line or configuration exits 2."""
    try:
        task_try = _parse(argv, test=test)
    except UsageError as exc:
        return _report_failure(None, f"bad arguments: {exc}", EXIT_USAGE)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_SUCCESS
    except ConfigError as exc:
        return _report_failure(None, str(exc), EXIT_USAGE)
    if not test:  # what a pod or a worker runs: its DAG file must be in the DAGs folder
        from crossdock.config_secrets import scrub_try_environment
        from crossdock.runner.dag_file_policy import DagFileNotAllowed, check_subdir_allowed

        scrub_try_environment(os.environ)  # the try needs no database, broker or other secret
        try:
            check_subdir_allowed(task_try.subdir)
        except (DagFileNotAllowed, ConfigError) as exc:
            return _report_failure(None, f"refusing to run: {exc}", EXIT_USAGE)
    try:
        return _run(task_try, mode="console" if test else "log")
    except ConfigError as exc:
        return _report_failure(None, str(exc), EXIT_USAGE)
