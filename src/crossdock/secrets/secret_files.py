"""Reading and atomically rewriting a JSON or YAML file that maps names to secrets.

A file ending in ``.yaml`` or ``.yml`` is YAML, any other JSON. A file that does not exist
(or is empty) maps nothing, so an unconfigured machine simply has no Variables.

Reads are cached by the file's inode, size and modification time: a try that reads ten
Variables parses the file once, yet sees a change the moment the file is replaced — which
is how a Kubernetes Secret mounted as a volume is updated, too.

Writes hold an exclusive ``flock`` on a lock file beside the file, re-read it, change it,
write a temporary file (mode 0600, in the same folder) and ``os.replace`` it over the
original, so a reader never sees half a file and two writers never lose each other's
change. A symlinked file is written where the link points. Error messages name the file
and the fault, never its contents.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

from crossdock.secrets.errors import SecretsFileError

FILE_MODE = 0o600
FOLDER_MODE = 0o700
YAML_SUFFIXES = (".yaml", ".yml")

T = TypeVar("T")

_cache: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
_cache_lock = threading.Lock()


def is_yaml(path: Path) -> bool:
    return path.suffix.lower() in YAML_SUFFIXES


def _parse(path: Path, text: str, what: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    if is_yaml(path):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "cannot be parsed"
            raise SecretsFileError(f"{what} {path} is not valid YAML: {problem}{where}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SecretsFileError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                                   f"column {exc.colno}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SecretsFileError(f"{what} {path} must hold one object mapping names to values, "
                               f"not a {type(data).__name__}")
    return {str(name): value for name, value in data.items()}


def _read_uncached(path: Path, what: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretsFileError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return _parse(path, text, what)


def read_mapping(path: Path, *, what: str) -> dict[str, Any]:
    """The mapping in ``path`` ({} when there is no file); do not change what is returned.

    :param what: how messages name the file (``"variables file"``).
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SecretsFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    key, stamp = str(path), (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    data = _read_uncached(path, what)
    with _cache_lock:
        _cache[key] = (stamp, data)
    return data


def _dump(path: Path, data: dict[str, Any]) -> str:
    if is_yaml(path):
        import yaml

        return yaml.safe_dump(data, default_flow_style=False, sort_keys=True, allow_unicode=True)
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_mapping(path: Path, data: dict[str, Any], *, what: str) -> None:
    """Replace ``path`` with ``data`` in one step (a 0600 temporary file renamed over it)."""
    target = Path(os.path.realpath(path))
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise SecretsFileError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:  # mkstemp made it 0600
            stream.write(_dump(target, data))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        raise SecretsFileError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def update_mapping(path: Path, change: Callable[[dict[str, Any]], T], *, what: str) -> T:
    """Apply ``change`` to the file's mapping under an exclusive lock and write the result.

    ``change`` edits the dict it is given in place and returns what the caller wants back;
    when it raises, or changes nothing, the file is left as it was.
    """
    import fcntl

    target = Path(os.path.realpath(path))
    lock_path = target.with_name(f".{target.name}.lock")
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise SecretsFileError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        original = _read_uncached(target, what)
        data = dict(original)
        result = change(data)
        if data != original:
            write_mapping(target, data, what=what)
        return result
    finally:
        os.close(lock_fd)  # closing releases the lock
