"""One try's log, read in chunks so a viewer can follow a running try.

Where it comes from, first that has it:

1. the try's log file under ``[logging] base_log_folder``: what the LocalExecutor's
   tries, Celery workers sharing the folder and pods of the local runtime write as they
   go, and where the scheduler saves a finished pod's container log before the pod is
   deleted (:mod:`crossdock.executors.kubernetes_pod_logs`), so finished pods keep theirs;
2. for a try still running on the Kubernetes path with no file here (a real cluster):
   the pod's container log, read through the official client by the try's labels, by
   the same reader the KubernetesExecutor's ``get_task_log`` uses.

``offset`` is a byte offset into that source; a chunk ends at a line end while the try
runs (a line is masked whole), so a viewer asks again with the ``continuation_token`` it
got until ``finished``. Every chunk passes through the secrets masker first.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from crossdock.database import create_session, ensure_migrated
from crossdock.operations.errors import BadRequest, NotFound
from crossdock.operations.reads.connections import register_known_secrets
from crossdock.operations.reads.task_instances import find_task_instance
from crossdock.runner.task_log import task_log_path
from crossdock.secrets.masking import redact

log = logging.getLogger("crossdock.operations")

#: Most bytes one read returns; the rest comes with the next continuation token.
MAX_CHUNK_BYTES = 1 << 20
#: States in which the latest try may still write to its log.
LIVE_STATES = frozenset({"queued", "running", "restarting"})
KUBERNETES_EXECUTOR = "KubernetesExecutor"


def _chunk(piece: bytes, start: int, size: int, *, live: bool, max_bytes: int) -> tuple[bytes, int]:
    """``piece`` (the source's bytes from ``start``, at most ``max_bytes`` of its ``size``) cut
    after its last full line while more may follow; and the offset after it."""
    more_follows = live or start + len(piece) < size
    if more_follows and piece and not piece.endswith(b"\n"):
        cut = piece.rfind(b"\n")
        piece = piece[:cut + 1] if cut >= 0 else (piece if len(piece) >= max_bytes else b"")
    return piece, start + len(piece)


def _read_file(path: Path, offset: int, max_bytes: int) -> tuple[bytes, int, int] | None:
    """``(bytes from offset, where they start, the file's size)``: only the chunk is read,
    so following a long log costs what it grew by, not its whole length."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = min(offset, size)
            handle.seek(start)
            return handle.read(max_bytes), start, size
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NotFound(f"cannot read the log file {path}: {exc.strerror or exc}") from None


def _pod_log(ti: Any, try_number: int) -> tuple[bytes, str] | None:
    """The running pod's container log (and which pod), or None when no pod answers."""
    from crossdock.operations.reads.pod_logs import read_running_pod_log

    found = read_running_pod_log(ti, try_number)
    if found is None:
        return None
    text, where = found
    return text.encode("utf-8"), where


def read_task_log(dag_id: str, run_id: str, task_id: str, *, try_number: int, map_index: int = -1,
                  offset: int = 0, max_bytes: int = MAX_CHUNK_BYTES) -> dict[str, Any]:
    """``{"content", "continuation_token", "offset", "finished", "source", "state", "try_number"}``.

    :param try_number: the try (1 is the first); NotFound for a try that has not happened.
    :param map_index: the mapped instance (-1 for an unmapped task).
    :param offset: the byte offset to read from (a previous answer's ``offset``).
    :param max_bytes: most bytes of log this answer carries.
    """
    if offset < 0 or max_bytes < 1:
        raise BadRequest(f"offset must be 0 or more and max_bytes at least 1, not {offset} and {max_bytes}")
    ensure_migrated()
    with create_session() as session:
        ti = find_task_instance(session, dag_id, run_id, task_id, map_index)
    if try_number < 1 or try_number > ti.try_number:
        tries = f"its tries are 1 to {ti.try_number}" if ti.try_number else "it has not run yet"
        raise NotFound(f"task {task_id!r} of run {run_id!r} of DAG {dag_id!r} has no try {try_number}; {tries}")
    live = try_number == ti.try_number and ti.state in LIVE_STATES
    path = task_log_path(dag_id=dag_id, task_id=task_id, run_id=run_id, try_number=try_number,
                         map_index=map_index)
    read, source = _read_file(path, offset, max_bytes), f"log file {path}"
    if read is None and live and ti.executor == KUBERNETES_EXECUTOR:
        found = _pod_log(ti, try_number)
        if found is not None:
            data, source = found
            start = min(offset, len(data))
            read = data[start:start + max_bytes], start, len(data)
    if read is None:
        read = b"", 0, 0
        source = f"no log yet at {path}" if live else f"no log at {path}"
    piece, end = _chunk(*read, live=live, max_bytes=max_bytes)
    register_known_secrets()
    return {"content": redact(piece.decode("utf-8", "replace")), "continuation_token": str(end), "offset": end,
            "finished": not live and end >= read[2], "source": source, "state": ti.state,
            "try_number": try_number}
