"""Where one task try writes its log, and how its output gets there.

A try's log lives at a path computed from its key alone, so anything that knows the
key (the executors' ``get_task_log``, the CLI, a log server) finds it without asking
the database:

    {[logging] base_log_folder}/dag_id=<d>/run_id=<r>/task_id=<t>/[map_index=<i>/]attempt=<n>.log

Output is captured at the file-descriptor level (``os.dup2`` onto fds 1 and 2), not by
swapping ``sys.stdout``: a BashOperator's ``bash`` and anything else the task starts
write straight to fd 1/2, and those bytes must land in the same file.

In a pod the try's output is copied to the container's stdout as well (``tee``): on a
cluster the log file stays inside the pod, and ``kubectl logs`` is where users look.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from crossdock.configuration import conf

LOG_FILE_SUFFIX = ".log"
#: Characters kept as they are in a path segment; anything else becomes ``_``. ``:``
#: and ``+`` stay because run ids carry ISO timestamps (``manual__2024-01-01T00:00:00+00:00``).
_UNSAFE_SEGMENT_CHARS = re.compile(r"[^A-Za-z0-9._\-+:=@,]")
LOG_FILE_MODE = 0o644
#: How long the end of a try waits for its copied output to drain (a process the task left
#: running may hold the pipe open; its later output is then not waited for).
TEE_DRAIN_SECONDS = 5.0


def safe_path_segment(value: str) -> str:
    """``value`` as one directory or file name: no separators, no ``..``, never empty.

    Ids come from DAG authors and API callers; a ``/`` or ``..`` in a run id must not
    let a log escape the log folder.
    """
    segment = _UNSAFE_SEGMENT_CHARS.sub("_", str(value))
    if segment in ("", ".", ".."):
        segment = "_" + segment
    return segment


def task_log_path(*, dag_id: str, task_id: str, run_id: str, try_number: int,
                  map_index: int = -1, base_log_folder: str | os.PathLike | None = None) -> Path:
    """The log file of one try.

    :param base_log_folder: root of all task logs; ``[logging] base_log_folder`` when None.
    """
    root = Path(base_log_folder if base_log_folder is not None
                else conf.getstr("logging", "base_log_folder")).expanduser()
    folder = (root / f"dag_id={safe_path_segment(dag_id)}" / f"run_id={safe_path_segment(run_id)}"
              / f"task_id={safe_path_segment(task_id)}")
    if map_index is not None and map_index >= 0:
        folder = folder / f"map_index={int(map_index)}"
    return folder / f"attempt={int(try_number)}{LOG_FILE_SUFFIX}"


def task_log_path_for_key(key, *, base_log_folder: str | os.PathLike | None = None) -> Path:
    """:func:`task_log_path` for a ``TaskInstanceKey`` (or anything with the same fields)."""
    return task_log_path(dag_id=key.dag_id, task_id=key.task_id, run_id=key.run_id,
                         try_number=key.try_number, map_index=key.map_index,
                         base_log_folder=base_log_folder)


def log_timestamp() -> str:
    """UTC, to the millisecond: logs of one run are compared across hosts."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def flush_std_streams() -> None:
    """Flush ``sys.stdout``/``sys.stderr`` before their fds change hands (a fork, a dup2),
    so no buffered text is written twice or to the wrong place; never raises."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


class OutputCapture:
    """Send fds 1 and 2 of this process into a log file until :meth:`restore`.

    The original stderr is kept open (as :attr:`original_stderr_fd`) so the caller can
    still write the one failure line its executor reads. ``sys.stdout``/``sys.stderr``
    are replaced meanwhile by line-buffered streams on fds 1 and 2: the ones a process
    was given may not write to those fds at all (a Celery worker's logging proxy, a
    test runner's capture), and line buffering keeps ``print`` output and a
    subprocess's output in the order they happened.
    """

    def __init__(self, path: Path, *, tee: bool = False):
        """:param tee: also copy everything to the original stdout (see the module docstring)."""
        self.path = path
        self.tee = tee
        self._saved_fds: dict[int, int] = {}
        self._saved_streams: tuple | None = None
        self._log_fd: int | None = None
        self._copier: threading.Thread | None = None

    @property
    def original_stderr_fd(self) -> int:
        return self._saved_fds.get(2, 2)

    def start(self) -> "OutputCapture":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, LOG_FILE_MODE)
        flush_std_streams()
        target = log_fd
        try:
            for fd in (1, 2):
                self._saved_fds[fd] = os.dup(fd)  # os.dup makes a non-inheritable copy
            if self.tee:
                target = self._start_copier(log_fd)
            for fd in (1, 2):
                os.dup2(target, fd)
        except OSError:
            if target != log_fd:
                os.close(target)
                target = log_fd
            self.restore()
            os.close(log_fd)
            raise
        if target != log_fd:
            os.close(target)  # fds 1 and 2 hold the pipe now
        self._log_fd = log_fd
        self._saved_streams = (sys.stdout, sys.stderr)
        if not is_plain_line_stream(sys.stdout, 1):
            sys.stdout = fd_text_stream(1)
        if not is_plain_line_stream(sys.stderr, 2):
            sys.stderr = fd_text_stream(2)
        return self

    def restore(self) -> None:
        """Put the original fds and streams back; safe to call twice."""
        flush_std_streams()
        if self._saved_streams is not None:
            sys.stdout, sys.stderr = self._saved_streams
            self._saved_streams = None
        for fd, saved in list(self._saved_fds.items()):
            os.dup2(saved, fd)
        if self._copier is not None:
            self._copier.join(TEE_DRAIN_SECONDS)
            self._copier = None
        for fd, saved in list(self._saved_fds.items()):
            os.close(saved)
            del self._saved_fds[fd]
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None

    def _start_copier(self, log_fd: int) -> int:
        """A pipe whose bytes a thread writes to the log file and the original stdout; its write end.

        The thread owns copies of both destinations, so :meth:`restore` may close its own
        even when a process the task left behind keeps the pipe open past the drain wait.
        """
        read_fd, write_fd = os.pipe()
        destinations = (os.dup(log_fd), os.dup(self._saved_fds[1]))
        self._copier = threading.Thread(target=_copy_until_closed, args=(read_fd, destinations),
                                        name="task-output-tee", daemon=True)
        self._copier.start()
        return write_fd

    def write_to_original_stderr(self, text: str) -> None:
        """Write past the capture, to wherever stderr pointed before :meth:`start`."""
        write_all(self.original_stderr_fd, text.encode("utf-8", "replace"))


def _copy_until_closed(read_fd: int, destinations: tuple[int, ...]) -> None:
    """Copy ``read_fd`` to every destination until its last writer closes it; close them all."""
    try:
        while True:
            try:
                data = os.read(read_fd, 65536)
            except InterruptedError:
                continue
            except OSError:
                break
            if not data:
                break
            for fd in destinations:
                write_all(fd, data)
    finally:
        for fd in (read_fd, *destinations):
            try:
                os.close(fd)
            except OSError:
                pass


def fd_text_stream(fd: int):
    """A line-buffered UTF-8 text stream on ``fd`` that leaves the fd open when dropped."""
    return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)


def is_plain_line_stream(stream, fd: int) -> bool:
    """True for a line-buffered text stream that writes straight to ``fd``, as
    :func:`fd_text_stream` makes: one a forked try can keep instead of making its own."""
    import io

    try:
        return (type(stream) is io.TextIOWrapper and stream.fileno() == fd
                and (fd == 0 or stream.line_buffering))
    except (OSError, ValueError, AttributeError):
        return False


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is out (a pipe may take a write in pieces)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return  # the reader is gone; nothing useful is left to do with the bytes
        view = view[written:]
