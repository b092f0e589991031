"""Files and folders of the runtime's state that only its owner may read.

Saved pods, pod plans (their environment can hold secret values), logs, tokens and keys
are written owner-only from the first byte: a file is created 0600 (never created
readable and narrowed afterwards) and folders are 0700. The process umask is left alone,
since it is shared by every thread of the process.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path | str) -> Path:
    """``path`` as a folder only its owner can enter; missing parents are created 0700 too."""
    folder = Path(path)
    missing = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for parent in reversed(missing):
        parent.mkdir(mode=DIR_MODE, exist_ok=True)
    if folder.stat().st_mode & 0o777 != DIR_MODE:
        os.chmod(folder, DIR_MODE)
    return folder


def open_private(path: Path | str, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """A file descriptor of ``path`` created owner-only; an existing file is narrowed to 0600."""
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_private(path: Path | str, data: str | bytes) -> None:
    """Replace ``path`` atomically with ``data``, owner-only."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    fd = open_private(tmp)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, target)


def touch_private(path: Path | str) -> None:
    """Create ``path`` owner-only if missing (kept as is otherwise, but narrowed to 0600)."""
    os.close(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND))
