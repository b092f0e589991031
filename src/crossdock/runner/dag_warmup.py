"""Import a task's DAG file in the warm parent, just before it forks the task's child.

Importing the DAG file and constructing its operators is most of what a forked no-op
try costs. A warm parent (the LocalExecutor's zygote, a Celery pool process) therefore
imports each DAG file once, into :mod:`crossdock.dag.loader`'s cache, and every child
forked afterwards inherits the loaded DAG as a copy-on-write copy: each try still gets
its own operators, so nothing one try changes reaches another, but the file's
module-level code runs once per parent per file version instead of once per try.

Warming is only an optimisation, so it must never change an outcome. Any failure
(an exception, ``[core] dagbag_import_timeout``) is logged and swallowed; the child then
imports the file itself exactly as without the cache and reports the same error. A file
that failed is not tried again in this parent until it changes, so a broken or hanging
file costs the parent one attempt per version.

Costs and limits. The parent does nothing else while it imports: a zygote answers its
other commands (a kill, a new try) only afterwards, so a slow file delays them by its
import time, once per version. A file that times out here is imported again by the
try's child, so that first try reports the timeout after twice the limit. The timeout is
a ``SIGALRM`` (off the main thread, an asynchronous exception) and only fires when the
interpreter runs Python code again: a DAG file stuck inside C code that never returns
holds the parent as long as it would hold a task. A file that ends the process outright
while it is imported (``os._exit``, a crash in native code) takes the parent with it,
and its running tries; so the parent notes the file it is importing in a small record,
and the next warm process of the same owner (the replacement zygote or pool process)
finds the record of its dead predecessor and leaves that file version to the tries.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import threading
from collections import OrderedDict
from typing import Sequence

from crossdock.processes import pid_alive

log = logging.getLogger(__name__)

#: Failed file versions remembered (least recently failed forgotten first).
FAILED_FILES_LIMIT = 256
#: Characters of a warming import's own output kept for the debug log.
OUTPUT_LOG_CHARS = 2000

_failed: OrderedDict[str, tuple] = OrderedDict()
#: Folder of the "importing now" records, one per warm process (named owner.pid).
RECORD_FOLDER_NAME = "crossdock-dag-warming"


def warming_enabled() -> bool:
    """``[core] cache_dag_files_in_workers``; an unreadable setting means off."""
    from crossdock.configuration import conf

    try:
        return conf.getboolean("core", "cache_dag_files_in_workers")
    except Exception:  # noqa: BLE001 - a bad value must not stop a task from starting
        return False


def dag_file_of_command(command: Sequence[str]) -> str | None:
    """The DAG file a ``crossdock tasks run`` command names with ``--subdir``, if it is a file.

    None for anything else (no ``--subdir``, a folder, a malformed command): those tries
    search for their DAG, which only the child does.
    """
    from crossdock.dag.loader import resolve_subdir
    from crossdock.runner.command import is_task_command, parse_task_command

    if not is_task_command(command):
        return None
    try:
        task_try = parse_task_command(command)
        if not task_try.subdir:
            return None
        location = resolve_subdir(task_try.subdir)
    except BaseException:  # noqa: BLE001 - argparse's SystemExit included: the child reports it
        return None
    return location if os.path.isfile(location) else None


def warm_dag_file(command: Sequence[str], *, timeout: float | None = None) -> bool:
    """Load the DAG file of ``command`` into this process's cache; never raises.

    True when the file's current version is in the cache afterwards. Call it in the
    warm parent right before forking the command's child.

    :param timeout: seconds the import may take; default ``[core] dagbag_import_timeout``.
    """
    try:
        if not warming_enabled():
            return False
        path = dag_file_of_command(command)
        if path is None:
            return False
        return _warm(path, timeout=timeout)
    except BaseException as exc:  # noqa: BLE001 - warming must never break the parent
        log.warning("could not pre-load the DAG file of %s; the task will import it itself: %s",
                    list(command)[:6], exc)
        return False


def _warm(path: str, *, timeout: float | None) -> bool:
    from crossdock.configuration import conf
    from crossdock.dag.loader import cache_dag_file, cached_dags, file_version

    if cached_dags(path) is not None:
        return True
    version = file_version(path)
    _adopt_records_of_dead_predecessors()
    if version is None or _failed.get(path) == version:
        return False
    if timeout is None:
        timeout = conf.getfloat("core", "dagbag_import_timeout") or None
    output = io.StringIO()
    record = _write_record(path, version)
    try:
        with _guarded_timeout(timeout), contextlib.redirect_stdout(output), \
                contextlib.redirect_stderr(output):
            cache_dag_file(path)
    except BaseException as exc:  # noqa: BLE001 - the child imports the file again and reports
        _remember_failure(path, version)
        reason = getattr(exc, "reason", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        log.warning("pre-loading DAG file %s failed; each task of this version imports it itself: %s",
                    path, reason)
        return False
    finally:
        _remove_record(record)
        printed = output.getvalue()
        if printed:
            log.debug("output of pre-loading %s: %s", path, printed[:OUTPUT_LOG_CHARS])
    _failed.pop(path, None)
    return True


def _remember_failure(path: str, version: tuple) -> None:
    _failed[path] = version
    _failed.move_to_end(path)
    while len(_failed) > FAILED_FILES_LIMIT:
        _failed.popitem(last=False)


@contextlib.contextmanager
def _guarded_timeout(seconds: float | None):
    """:func:`~crossdock.runner.interrupt.execution_timeout` for an import, with the
    process's own ``SIGALRM`` handling put back even if the alarm fires at the very end."""
    from crossdock.runner.interrupt import DagImportTimeout, execution_timeout

    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGALRM) if main else None
    try:
        with execution_timeout(seconds, error=DagImportTimeout):
            yield
    finally:
        if main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


def _record_folder() -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"{RECORD_FOLDER_NAME}-{os.getuid()}")


def _write_record(path: str, version: tuple) -> str | None:
    """Note "importing ``path`` now" where a successor of this process will look."""
    folder = _record_folder()
    record = os.path.join(folder, f"{os.getppid()}.{os.getpid()}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        with open(record, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"path": path, "version": list(version)}))
    except OSError:
        return None
    return record


def _remove_record(record: str | None) -> None:
    if record is not None:
        try:
            os.unlink(record)
        except OSError:
            pass


def _adopt_records_of_dead_predecessors() -> None:
    """A sibling warm process that died while importing a file: that version failed."""
    folder = _record_folder()
    prefix = f"{os.getppid()}."
    try:
        names = [name for name in os.listdir(folder) if name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        try:
            pid = int(name[len(prefix):])
        except ValueError:
            continue
        if pid == os.getpid() or pid_alive(pid):
            continue
        record = os.path.join(folder, name)
        try:
            with open(record, encoding="utf-8") as handle:
                data = json.load(handle)
            _remember_failure(str(data["path"]), tuple(data["version"]))
            log.warning("a previous warm process died while pre-loading DAG file %s; its tasks import it "
                        "themselves until it changes", data["path"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        _remove_record(record)


def forget_failures() -> None:
    """Try every failed file again on its next command (tests, a reloaded configuration)."""
    _failed.clear()
