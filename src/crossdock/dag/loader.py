"""Finding DAG files and importing them into DAG objects.

This runs user code. The scheduler never calls it directly: it goes through
:mod:`crossdock.dag.processor`, which runs it in a child process. The task runner
calls :func:`get_dag` to load the one DAG whose task it runs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import zlib
from pathlib import Path
from types import ModuleType

from crossdock.dag.dag import DAG, _open_dags, collect_created_dags
from crossdock.dag.exceptions import DagDefinitionError, DagFileError, DagNotFound

log = logging.getLogger(__name__)

#: File in a folder listing regexes of paths (relative to that folder) to skip.
IGNORE_FILE_NAME = ".crossdockignore"
#: Words a file must contain (any case) to be imported at all: cheap protection from
#: running every utility script that happens to sit in the dags folder.
SAFE_MODE_WORDS = (b"dag", b"crossdock")
#: Prefix of the module names DAG files are imported under.
MODULE_PREFIX = "crossdock_dagfile_"
#: crossdock's own example DAGs, loaded when ``[core] load_examples`` is true.
EXAMPLE_DAGS_FOLDER = str(Path(__file__).resolve().parent.parent / "example_dags")


# -- finding files -------------------------------------------------------------------
def _read_ignore_patterns(folder: str) -> list[re.Pattern[str]]:
    path = os.path.join(folder, IGNORE_FILE_NAME)
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    patterns = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            patterns.append(re.compile(line))
        except re.error as exc:
            log.warning("%s line %d: ignoring invalid regex %r: %s", path, number, line, exc)
    return patterns


def might_contain_dag(path: str) -> bool:
    """True if the file mentions both 'dag' and 'crossdock' (any case)."""
    try:
        with open(path, "rb") as handle:
            content = handle.read().lower()
    except OSError:
        return False
    return all(word in content for word in SAFE_MODE_WORDS)


def find_dag_file_paths(folder: str | os.PathLike[str], *, safe_mode: bool = True) -> list[str]:
    """Absolute paths of the ``*.py`` files under ``folder`` that may define DAGs, sorted.

    Skips hidden entries and ``__pycache__``, files matched by a ``.crossdockignore``
    regex (it applies to its own folder and everything below, matched with
    ``re.search`` against the path relative to that folder), and, with ``safe_mode``,
    files that do not mention both "dag" and "crossdock".
    """
    root = os.path.abspath(os.fspath(folder))
    if os.path.isfile(root):
        return [root] if root.endswith(".py") else []
    found: list[str] = []
    # (folder that holds the ignore file, its patterns), inherited by subfolders
    rules_by_dir: dict[str, list[tuple[str, list[re.Pattern[str]]]]] = {}
    for current, dirnames, filenames in os.walk(root, followlinks=True):
        inherited = rules_by_dir.get(current, [])
        own = _read_ignore_patterns(current)
        rules = inherited + ([(current, own)] if own else [])

        def ignored(path: str) -> bool:
            for base, patterns in rules:
                relative = os.path.relpath(path, base).replace(os.sep, "/")
                if any(pattern.search(relative) for pattern in patterns):
                    return True
            return False

        kept_dirs = []
        for name in sorted(dirnames):
            path = os.path.join(current, name)
            if name.startswith(".") or name == "__pycache__" or ignored(path):
                continue
            kept_dirs.append(name)
            rules_by_dir[path] = rules
        dirnames[:] = kept_dirs
        for name in filenames:
            if not name.endswith(".py") or name.startswith("."):
                continue
            path = os.path.join(current, name)
            if ignored(path) or (safe_mode and not might_contain_dag(path)):
                continue
            found.append(path)
    return sorted(found)


# -- importing a file --------------------------------------------------------------
def _module_name(path: str) -> str:
    digest = f"{zlib.crc32(path.encode('utf-8')):08x}"
    stem = re.sub(r"\W", "_", Path(path).stem)
    return f"{MODULE_PREFIX}{digest}_{stem}"


def _describe_exception(exc: BaseException, path: str) -> str:
    """``Type: message`` and where in the user's file it happened."""
    import traceback

    if isinstance(exc, SyntaxError) and exc.filename == path:
        # format_exception_only shows the file, line, the code and a caret under the error.
        return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    text = f"{type(exc).__name__}: {exc}"
    user_frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == path]
    if user_frames:
        frame = user_frames[-1]
        text += f'\n  File "{frame.filename}", line {frame.lineno}, in {frame.name}'
        if frame.line:
            text += f"\n    {frame.line}"
    return text


def _add_dags_folder_to_path() -> None:
    """Let DAG files import shared modules kept next to them, as Airflow does."""
    from crossdock.configuration import conf

    folder = os.path.abspath(os.path.expanduser(conf.getstr("core", "dags_folder")))
    if os.path.isdir(folder) and folder not in sys.path:
        sys.path.append(folder)


def load_dags_from_file(path: str | os.PathLike[str]) -> dict[str, DAG]:
    """Import one DAG file and return its DAGs by dag_id (empty if it defines none).

    The file is imported as a new module under a name unique to its path, so files
    with the same base name do not replace each other. DAGs are collected from the
    module's globals and from every DAG constructed during the import. Anything that
    goes wrong raises :class:`DagFileError` with a message a user can act on.
    """
    path = os.path.abspath(os.fspath(path))
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as exc:
        raise DagFileError(path, f"cannot read the file: {exc.strerror or exc}") from None
    _add_dags_folder_to_path()
    name = _module_name(path)
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        raise DagFileError(path, _describe_exception(exc, path)) from None

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec) if spec else ModuleType(name)
    module.__file__ = path
    previous = sys.modules.get(name)
    sys.modules[name] = module
    open_before = len(_open_dags)
    try:
        with collect_created_dags() as created:
            exec(code, module.__dict__)
    except (Exception, SystemExit) as exc:
        del _open_dags[open_before:]
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        raise DagFileError(path, _describe_exception(exc, path)) from None
    # A DAG entered without a matching exit must not capture the next file's tasks.
    del _open_dags[open_before:]

    dags: dict[str, DAG] = {}
    candidates = list(created) + [value for value in list(vars(module).values())
                                  if isinstance(value, DAG) and value.fileloc == path]
    for dag in candidates:
        known = dags.get(dag.dag_id)
        if known is dag:
            continue
        if known is not None:
            raise DagFileError(path, f"DagDefinitionError: DAG id {dag.dag_id!r} is defined twice in this file")
        dag.fileloc = path
        try:
            dag.validate()
        except DagDefinitionError as exc:
            raise DagFileError(path, f"{type(exc).__name__}: {exc}") from None
        dags[dag.dag_id] = dag
    return dags


# -- finding one DAG ---------------------------------------------------------------
def resolve_subdir(subdir: str | None) -> str:
    """``subdir`` with a leading ``DAGS_FOLDER`` replaced by the configured dags folder."""
    from crossdock.configuration import conf
    from crossdock.runner.command import DAGS_FOLDER_MARKER

    folder = os.path.expanduser(conf.getstr("core", "dags_folder"))
    if not subdir:
        return os.path.abspath(folder)
    if subdir == DAGS_FOLDER_MARKER:
        return os.path.abspath(folder)
    if subdir.startswith(DAGS_FOLDER_MARKER + "/"):
        return os.path.abspath(os.path.join(folder, subdir[len(DAGS_FOLDER_MARKER) + 1:]))
    return os.path.abspath(os.path.expanduser(subdir))


def _mentions(path: str, dag_id: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return dag_id.encode("utf-8") in handle.read()
    except OSError:
        return False


def get_dag(dag_id: str, *, subdir: str | None = None) -> DAG:
    """Load the DAG ``dag_id``: from the file ``subdir``, or by searching a folder.

    ``subdir`` may be a file, a folder, or None for ``[core] dags_folder`` (plus the
    example DAGs when ``[core] load_examples`` is set); ``DAGS_FOLDER/...`` is relative
    to the configured dags folder. Files that mention the dag_id are tried first.
    A broken file given directly raises :class:`DagFileError`; a DAG that no file
    defines raises :class:`DagNotFound` naming the places searched.
    """
    location = resolve_subdir(subdir)
    if os.path.isfile(location):
        dags = load_dags_from_file(location)
        if dag_id in dags:
            return dags[dag_id]
        defined = ", ".join(sorted(dags)) or "none"
        raise DagNotFound(dag_id, f"DAG {dag_id!r} is not defined in {location} (it defines: {defined})")

    folders = [location]
    if subdir is None:
        from crossdock.configuration import conf

        if conf.getboolean("core", "load_examples"):
            folders.append(EXAMPLE_DAGS_FOLDER)
    if not any(os.path.isdir(folder) for folder in folders):
        raise DagNotFound(dag_id, f"DAG {dag_id!r} not found: {location} does not exist")
    paths = [path for folder in folders for path in find_dag_file_paths(folder)]
    paths.sort(key=lambda path: not _mentions(path, dag_id))
    failures: list[str] = []
    for path in paths:
        try:
            dags = load_dags_from_file(path)
        except DagFileError as exc:
            failures.append(f"{exc.path}: {exc.message.splitlines()[0]}")
            continue
        if dag_id in dags:
            return dags[dag_id]
    message = f"DAG {dag_id!r} not found in {' or '.join(folders)} ({len(paths)} DAG files searched)"
    if failures:
        message += "; files that failed to import: " + "; ".join(failures)
    raise DagNotFound(dag_id, message)
