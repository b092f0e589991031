"""Finding DAG files and importing them into DAG objects.

This runs user code. The scheduler never calls it directly: it goes through
:mod:`crossdock.dag.processor`, which runs it in a child process. The task runner
calls :func:`get_dag` to load the one DAG whose task it runs.

A warm process that forks one child per task try (the LocalExecutor's zygote, a Celery
pool process) may import a DAG file once with :func:`cache_dag_file`; its children then
inherit the loaded DAG objects and :func:`get_dag` takes them from the cache as long as
the file (and the helper modules it imported from the dags folder) is unchanged. Only
warm parents fill the cache: a process that calls :func:`get_dag` itself gets a new
import each time, as before.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from crossdock.dag import airflow_alias
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
#: Most DAG files a process keeps imported: warm parents live long and files come and go.
DAG_FILE_CACHE_SIZE = 64


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


def might_contain_dag(path: str, *, airflow_files: bool = False) -> bool:
    """True if the file mentions both 'dag' and 'crossdock' (any case), or, with
    ``airflow_files`` (the import alias is on), both 'dag' and 'airflow'."""
    try:
        with open(path, "rb") as handle:
            content = handle.read().lower()
    except OSError:
        return False
    word_sets = (SAFE_MODE_WORDS, airflow_alias.AIRFLOW_SAFE_MODE_WORDS) if airflow_files else (SAFE_MODE_WORDS,)
    return any(all(word in content for word in words) for words in word_sets)


def find_dag_file_paths(folder: str | os.PathLike[str], *, safe_mode: bool = True) -> list[str]:
    """Absolute paths of the ``*.py`` files under ``folder`` that may define DAGs, sorted.

    Skips hidden entries and ``__pycache__``, files matched by a ``.crossdockignore``
    regex (it applies to its own folder and everything below, matched with
    ``re.search`` against the path relative to that folder), and, with ``safe_mode``,
    files that do not mention both "dag" and "crossdock" (or "dag" and "airflow" under
    ``[core] airflow_import_alias``).
    """
    root = os.path.abspath(os.fspath(folder))
    airflow_files = safe_mode and airflow_alias.enabled()
    if airflow_files:
        airflow_alias.report_real_airflow()  # the scan runs in the scheduler, whose log users read
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
            if ignored(path) or (safe_mode and not might_contain_dag(path, airflow_files=airflow_files)):
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
    airflow_alias.ensure_configured()
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


# -- the per-process cache of imported files -----------------------------------------
#: What identifies one version of a file: a rewrite, a replace or a touch changes it.
FileVersion = tuple[int, int, int, int, int]


def file_version(path: str) -> FileVersion | None:
    """(device, inode, size, mtime_ns, ctime_ns) of ``path``; None if it cannot be stat'ed."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@dataclass(frozen=True)
class _CachedFile:
    """One imported DAG file and the local code it depended on when it was imported.

    ``helpers`` are the modules in ``sys.modules`` after the import whose file lies in
    the dags folder or next to the DAG file (shared code kept beside DAGs): a change to
    one of them makes the entry stale too. ``introduced`` names those the import loaded
    for the first time; they leave ``sys.modules`` with the entry, so the next import
    reads them again.
    """

    version: FileVersion
    dags: dict[str, DAG]
    helpers: tuple[tuple[str, FileVersion | None], ...]  # (file, version)
    introduced: tuple[str, ...]

    def is_fresh(self, path: str) -> bool:
        if file_version(path) != self.version:
            return False
        return all(file_version(helper_path) == version for helper_path, version in self.helpers)


_cache: OrderedDict[str, _CachedFile] = OrderedDict()


def _local_folders(path: str) -> list[str]:
    from crossdock.configuration import conf

    folders = [os.path.dirname(path)]
    try:
        folders.append(os.path.abspath(os.path.expanduser(conf.getstr("core", "dags_folder"))))
    except Exception:  # noqa: BLE001 - a broken setting only narrows what is tracked
        pass
    return [folder.rstrip(os.sep) + os.sep for folder in folders]


def _installed_prefixes() -> tuple[str, ...]:
    """Where installed libraries live: never "helper modules", even inside a dags folder."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return tuple(os.path.abspath(prefix).rstrip(os.sep) + os.sep for prefix in prefixes)


def _is_local_helper(name: str, module: object, folders: list[str], installed: tuple[str, ...]) -> str | None:
    """The module's file if it is shared code kept beside DAGs, else None."""
    module_file = getattr(module, "__file__", None)
    if not module_file or not isinstance(module_file, str) or name.startswith(MODULE_PREFIX):
        return None
    module_file = os.path.abspath(module_file)
    if not module_file.startswith(tuple(folders)) or module_file.startswith(installed):
        return None
    if any(f"{os.sep}{part}{os.sep}" in module_file for part in ("site-packages", "dist-packages")):
        return None
    return module_file


def _local_modules(path: str, *, before: set[str]) -> tuple[tuple[tuple[str, FileVersion | None], ...],
                                                            tuple[str, ...]]:
    """(file, version) of every loaded helper module, and the names new since ``before``."""
    folders, installed = _local_folders(path), _installed_prefixes()
    helpers: dict[str, FileVersion | None] = {}
    introduced = []
    for name, module in list(sys.modules.items()):
        module_file = _is_local_helper(name, module, folders, installed)
        if module_file is None:
            continue
        helpers[module_file] = file_version(module_file)
        if name not in before:
            introduced.append(name)
    return tuple(sorted(helpers.items())), tuple(sorted(introduced))


def _forget_new_helpers(path: str, *, before: set[str]) -> None:
    """Unload helper modules a failed or discarded import brought in, so the next
    import of the file (here or in a forked child) reads them from disk again."""
    _helpers, introduced = _local_modules(path, before=before)
    for name in introduced:
        sys.modules.pop(name, None)


def _drop_stale() -> None:
    """Drop every cached file that changed, so no stale helper module outlives it."""
    for path, entry in list(_cache.items()):
        if not entry.is_fresh(path):
            _drop(path)


def _drop(path: str) -> None:
    """Forget a cached file and the helper modules its import brought in."""
    entry = _cache.pop(path, None)
    if entry is not None:
        for name in entry.introduced:
            sys.modules.pop(name, None)


def cached_dags(path: str | os.PathLike[str]) -> dict[str, DAG] | None:
    """The DAGs of ``path`` from this process's cache if the file is unchanged, else None.

    A stale entry is dropped on the way, with its helper modules.
    """
    path = os.path.abspath(os.fspath(path))
    entry = _cache.get(path)
    if entry is None:
        return None
    if not entry.is_fresh(path):
        _drop(path)
        return None
    _cache.move_to_end(path)
    return entry.dags


def cache_dag_file(path: str | os.PathLike[str], *, max_files: int | None = None) -> dict[str, DAG]:
    """Import ``path`` unless the cache already holds its current version; keep the result.

    For warm parents only: the DAG objects returned are shared by every later caller
    in this process (forked children get their own copies). Raises
    :class:`DagFileError` like :func:`load_dags_from_file`; failures are not cached.
    The least recently used files beyond ``max_files`` (default
    :data:`DAG_FILE_CACHE_SIZE`) are forgotten.
    """
    path = os.path.abspath(os.fspath(path))
    dags = cached_dags(path)
    if dags is not None:
        return dags
    _drop_stale()
    version = file_version(path)
    before = set(sys.modules)
    open_before = len(_open_dags)
    try:
        dags = load_dags_from_file(path)
    except BaseException:
        # An interruption (a timeout) can leave what a plain failure cleans up itself.
        del _open_dags[open_before:]
        if _module_name(path) not in before:
            sys.modules.pop(_module_name(path), None)
        _forget_new_helpers(path, before=before)
        raise
    if version is None or file_version(path) != version:
        # Changed while it was being imported: what was read may be either version.
        _forget_new_helpers(path, before=before)
        return dags
    helpers, introduced = _local_modules(path, before=before)
    _cache[path] = _CachedFile(version=version, dags=dags, helpers=helpers, introduced=introduced)
    limit = DAG_FILE_CACHE_SIZE if max_files is None else max_files
    while len(_cache) > max(0, limit):
        _drop(next(iter(_cache)))
    return dags


def clear_dag_file_cache() -> None:
    """Forget every cached file (and the helper modules their imports brought in)."""
    for path in list(_cache):
        _drop(path)


def cached_dag_files() -> list[str]:
    """Paths in the cache, least recently used first."""
    return list(_cache)


def _dags_of_file(path: str) -> dict[str, DAG]:
    """From the cache when a warm parent left the current version there, else imported."""
    dags = cached_dags(path)
    if dags is not None:
        return dags
    if _cache:
        _drop_stale()
    return load_dags_from_file(path)


# -- finding one DAG ---------------------------------------------------------------
#: What a DAG file path starts with in a task command when it lies in the dags folder;
#: the runner puts its own dags folder in its place, so a path is valid on any worker.
DAGS_FOLDER_MARKER = "DAGS_FOLDER"


def resolve_subdir(subdir: str | None) -> str:
    """``subdir`` with a leading ``DAGS_FOLDER`` replaced by the configured dags folder."""
    from crossdock.configuration import conf

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
        dags = _dags_of_file(location)
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
            dags = _dags_of_file(path)
        except DagFileError as exc:
            failures.append(f"{exc.path}: {exc.message.splitlines()[0]}")
            continue
        if dag_id in dags:
            return dags[dag_id]
    message = f"DAG {dag_id!r} not found in {' or '.join(folders)} ({len(paths)} DAG files searched)"
    if failures:
        message += "; files that failed to import: " + "; ".join(failures)
    raise DagNotFound(dag_id, message)
