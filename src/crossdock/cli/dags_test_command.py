"""``crossdock dags test DAG_ID [LOGICAL_DATE]``: one whole DAG run in the foreground.

As Airflow's ``dags test``: no scheduler, no workers and no metadata database (never
opened, so it works where none is configured or reachable). The DAG is loaded as
``tasks test`` loads it (``[core] dags_folder``, or ``-S/--subdir``), the run is
``manual__<logical date>`` with the conf of ``-c/--conf`` checked against the DAG's
params, and :class:`~crossdock.cli.dag_test_run.DagTestRun` runs it: each try in a fork
of this process, its log copied to stderr as it runs. Stdout gets one line per task
outcome (``task_id  state  duration  [reason]``) and a last line with the run's state,
so a script can read them apart from the logs.

Exit codes: 0 the run succeeded; 1 it failed; 2 the command was wrong (unknown DAG,
a DAG file that does not import, a bad date or conf).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, Iterator

from crossdock.cli.dag_test_run import DagTestRun, TaskReport
from crossdock.exceptions import UserFacingError

EXIT_SUCCESS = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
#: The environment variable that sets ``[core] dags_folder`` (read live by the configuration).
DAGS_FOLDER_ENV = "CROSSDOCK__CORE__DAGS_FOLDER"


class BadArguments(UserFacingError):
    """The command cannot start a run; the message says why (exit 2)."""


def test(args) -> int:
    """The ``dags test`` handler: run the DAG, print its outcomes, return the exit code."""
    try:
        logical_date = _logical_date(args.logical_date)
        run_conf = _conf(args.conf)
        with _dags_folder_holding(args.subdir):
            dag = _load_serialized_dag(args.dag_id, args.subdir)
            _check_conf(dag, run_conf)
            return _run(dag, logical_date=logical_date, run_conf=run_conf)
    except BadArguments as exc:
        print(f"crossdock: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


# -- arguments ---------------------------------------------------------------------------
def _logical_date(text: str | None) -> datetime:
    from crossdock.runner.command import UsageError, logical_date_option

    try:
        value = logical_date_option(text)
    except UsageError as exc:
        raise BadArguments(str(exc).replace("--logical-date", "LOGICAL_DATE")) from None
    return value or datetime.now(timezone.utc).replace(microsecond=0)


def _conf(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadArguments(f"--conf is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadArguments(f"--conf must be a JSON object, not {type(value).__name__}")
    return value


def _check_conf(dag: Any, run_conf: dict[str, Any] | None) -> None:
    from crossdock.dag.param import ParamValidationError, validate_run_conf

    try:
        validate_run_conf(dag.params, run_conf)
    except ParamValidationError as exc:
        raise BadArguments(f"no run of DAG {dag.dag_id!r} was started: {exc}") from None


@contextlib.contextmanager
def _dags_folder_holding(subdir: str | None) -> Iterator[None]:
    """Make ``[core] dags_folder`` hold ``subdir`` while the run lasts, when it does not already.

    A try loads only DAG files inside the DAGs folder (its command says ``DAGS_FOLDER/…``
    and :mod:`crossdock.runner.dag_file_policy` refuses anything else). A user who names
    a file elsewhere on their own command line means that file: its folder is this run's
    DAGs folder, for this process and the tries it forks, and the old setting comes back
    afterwards.
    """
    from crossdock.runner.dag_file_policy import DagFileNotAllowed, check_subdir_allowed

    if not subdir:
        yield
        return
    from crossdock.dag.loader import resolve_subdir

    location = resolve_subdir(subdir)
    try:
        check_subdir_allowed(location)
        yield
        return
    except DagFileNotAllowed:
        pass
    folder = location if os.path.isdir(location) else os.path.dirname(location)
    print(f"crossdock: {location} is outside [core] dags_folder; this run uses {folder} as its DAGs folder",
          file=sys.stderr)
    saved = os.environ.get(DAGS_FOLDER_ENV)
    os.environ[DAGS_FOLDER_ENV] = folder
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(DAGS_FOLDER_ENV, None)
        else:
            os.environ[DAGS_FOLDER_ENV] = saved


def _load_serialized_dag(dag_id: str, subdir: str | None) -> Any:
    """The DAG as the scheduler would see it, its file kept imported so each forked try
    inherits it instead of importing it again (as a warm worker's tries do)."""
    from crossdock.configuration import conf
    from crossdock.dag.exceptions import DagDefinitionError, DagFileError, DagNotFound
    from crossdock.dag.loader import cache_dag_file, get_dag, resolve_subdir
    from crossdock.dag.serialization import SerializedDAG, serialize_dag
    from crossdock.runner.interrupt import DagImportTimeout, execution_timeout

    try:
        with execution_timeout(conf.getfloat("core", "dagbag_import_timeout") or None, error=DagImportTimeout):
            location = resolve_subdir(subdir) if subdir else None
            if location is None or not os.path.isfile(location):
                location = get_dag(dag_id, subdir=subdir).fileloc
            dags = cache_dag_file(location)
        if dag_id not in dags:
            raise DagNotFound(dag_id, f"DAG {dag_id!r} is not defined in {location} "
                                      f"(it defines: {', '.join(sorted(dags)) or 'none'})")
        return SerializedDAG.from_dict(serialize_dag(dags[dag_id]))
    except DagFileError as exc:
        raise BadArguments(f"{exc.path}: {(exc.message.strip().splitlines() or ['cannot be imported'])[0]}") from None
    except (DagNotFound, DagDefinitionError) as exc:
        raise BadArguments(str(exc)) from None
    except DagImportTimeout as exc:
        raise BadArguments(exc.reason) from None


# -- the run -------------------------------------------------------------------------------
def _run(dag: Any, *, logical_date: datetime, run_conf: dict[str, Any] | None) -> int:
    from crossdock.scheduler.dag_runs import MANUAL, run_id_for

    run_id = run_id_for(MANUAL, logical_date)
    width = max((len(task_id) for task_id in dag.tasks), default=7)
    counts: dict[str, int] = {}

    def report(item: TaskReport) -> None:
        if item.state in FINAL_STATES:
            counts[item.state] = counts.get(item.state, 0) + 1
        print(task_line(item, width=width), flush=True)

    print(f"crossdock: testing DAG {dag.dag_id!r}, run {run_id}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        state = DagTestRun(dag, run_id=run_id, logical_date=logical_date, conf=run_conf, report=report).run()
    except KeyboardInterrupt:  # the running try was stopped on the way out
        print(f"run {run_id} of DAG {dag.dag_id}: interrupted after {time.monotonic() - started:.2f}s", flush=True)
        raise
    tally = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "no tasks"
    print(f"run {run_id} of DAG {dag.dag_id}: {state} ({tally}) in {time.monotonic() - started:.2f}s", flush=True)
    return EXIT_SUCCESS if state == "success" else EXIT_RUN_FAILED


#: States a task ends in (a line in another state is one try of several).
FINAL_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
#: Width of the state column: the longest state a line can show.
STATE_WIDTH = len("up_for_reschedule")


def task_line(item: TaskReport, *, width: int) -> str:
    """``task_id  state  duration  [reason]``, the columns aligned; ``-`` when no try ran."""
    from crossdock.secrets.masking import redact

    duration = "-" if item.duration is None else f"{item.duration:.2f}s"
    line = f"{item.task_id.ljust(width)}  {item.state.ljust(STATE_WIDTH)}  {duration.rjust(7)}"
    if item.reason:
        line += f"  {redact(item.reason)}"
    return line.rstrip()
