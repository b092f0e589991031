"""crossdock configuration: an INI file, environment overrides and documented defaults.

Lookup order for ``[section] key``:

1. the environment variable ``CROSSDOCK__SECTION__KEY`` (upper case, double underscores),
2. ``$CROSSDOCK_HOME/crossdock.cfg`` (``CROSSDOCK_HOME`` defaults to ``~/crossdock``),
3. the default in :data:`DEFAULTS`.

Every key crossdock reads is declared in :data:`DEFAULTS` with its type and meaning, so a
bad value fails with one line naming the key instead of a traceback deep in the code
that happened to read it first. Section and key names follow Airflow's where Airflow has
one, so an Airflow user can carry their ``airflow.cfg`` knowledge over.
"""

from __future__ import annotations

import configparser
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossdock.exceptions import UserFacingError

ENV_PREFIX = "CROSSDOCK__"
HOME_ENV = "CROSSDOCK_HOME"
CONFIG_FILE_ENV = "CROSSDOCK_CONFIG"
DEFAULT_HOME = "~/crossdock"
CONFIG_FILE_NAME = "crossdock.cfg"


class ConfigError(UserFacingError):
    """A configuration value is missing, unreadable or of the wrong type.

    The message is always one line that names the section and key.
    """


@dataclass(frozen=True)
class Option:
    """One documented configuration key."""

    default: Any
    kind: str  # "str" | "int" | "float" | "bool" | "json"
    help: str


def _opt(default: Any, kind: str, help: str) -> Option:
    return Option(default, kind, help)


#: Every key crossdock reads, by section. ``{CROSSDOCK_HOME}`` in a default is expanded.
DEFAULTS: dict[str, dict[str, Option]] = {
    "core": {
        "executor": _opt("LocalExecutor", "str",
                         "Executor name or dotted path; a comma-separated list configures several, "
                         "the first being the default."),
        "parallelism": _opt(32, "int", "Most task instances running at once, across all DAGs."),
        "max_active_tasks_per_dag": _opt(16, "int", "Most running task instances of one DAG."),
        "max_active_runs_per_dag": _opt(16, "int", "Default max_active_runs of a DAG."),
        "dags_folder": _opt("{CROSSDOCK_HOME}/dags", "str", "Folder scanned for DAG files."),
        "default_queue": _opt("default", "str", "Queue of an operator that names none."),
        "default_pool_slots": _opt(128, "int", "Slots of the built-in default_pool."),
        "dagbag_import_timeout": _opt(30.0, "float",
                                      "Seconds a DAG file may take to import before it is killed."),
        "load_examples": _opt(False, "bool", "Also load crossdock's example DAGs."),
        "hostname": _opt("", "str", "Hostname recorded on task instances; empty means the machine's."),
        "task_commands_only": _opt(True, "bool",
                                   "Executors and workers run only 'crossdock tasks run ...' commands. Turn "
                                   "off only to drive executors directly with commands of your own."),
        "cache_dag_files_in_workers": _opt(True, "bool",
                                           "A warm process that forks task tries (the LocalExecutor's, a "
                                           "Celery worker's pool process) imports each DAG file once and "
                                           "its forks inherit the loaded DAGs. Off: every try imports it."),
    },
    "database": {
        "sql_alchemy_conn": _opt("sqlite:///{CROSSDOCK_HOME}/crossdock.db", "str",
                                 "SQLAlchemy URL of the metadata database."),
        "sql_alchemy_pool_size": _opt(5, "int", "Connection pool size (not used for SQLite)."),
        "sqlite_busy_timeout": _opt(30.0, "float", "Seconds SQLite waits on a locked database."),
        "connect_timeout": _opt(10, "int", "Seconds to wait when connecting to the database."),
    },
    "scheduler": {
        "task_queued_timeout": _opt(600.0, "float",
                                    "Seconds a task may stay queued before it is revoked and requeued."),
        "num_stuck_in_queued_retries": _opt(2, "int",
                                            "Requeues of a task stuck in queued before it fails."),
        "scheduler_heartbeat_sec": _opt(5.0, "float", "Seconds between heartbeats of the scheduler job."),
        "scheduler_health_check_threshold": _opt(30.0, "float",
                                                 "Seconds without a heartbeat after which a job is dead."),
        "dag_dir_list_interval": _opt(30.0, "float", "Seconds between re-scans of the DAG folder."),
        "min_loop_sleep": _opt(0.002, "float", "Shortest pause of the scheduler loop when busy."),
        "max_loop_sleep": _opt(0.2, "float", "Longest pause of the scheduler loop when idle."),
        "new_runs_poll_interval": _opt(0.2, "float",
                                       "Seconds between checks for triggered DAG runs."),
        "orphaned_tasks_check_interval": _opt(300.0, "float",
                                              "Seconds between checks for tasks of dead schedulers."),
        "standby_takeover_seconds": _opt(10.0, "float",
                                         "Most seconds from the active scheduler's death to a standby "
                                         "being active (its lease times out in 60 % of it)."),
    },
    "logging": {
        "base_log_folder": _opt("{CROSSDOCK_HOME}/logs", "str", "Root folder of task logs."),
        "logging_level": _opt("INFO", "str", "Level of crossdock's own log messages."),
    },
    "local_executor": {
        "fork": _opt(True, "bool",
                     "Run each task in a fork of a warm process (True) or a new interpreter (False)."),
    },
}


def crossdock_home() -> Path:
    """The folder that holds the config file, SQLite database and logs by default."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def config_file_path() -> Path:
    return Path(os.environ.get(CONFIG_FILE_ENV) or crossdock_home() / CONFIG_FILE_NAME).expanduser()


_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def _convert(section: str, key: str, raw: Any, kind: str) -> Any:
    """Turn a raw string (or a default) into the key's type, or fail naming the key."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError("expected true or false")
        if kind == "json":
            return json.loads(text) if text else None
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"[{section}] {key} = {raw!r} is not a valid {kind}: {exc}") from None
    return raw


class CrossdockConfig:
    """Reads configuration values; re-reads the file when :meth:`reload` is called."""

    def __init__(self) -> None:
        self._parser: configparser.ConfigParser | None = None
        self._path: Path | None = None
        self._location: tuple[str | None, str | None] | None = None
        #: Values already read, once :meth:`freeze` was called (None: not frozen).
        self._frozen: dict[tuple[str, str, str | None], Any] | None = None

    # -- loading -----------------------------------------------------------------
    def reload(self) -> None:
        """Forget the parsed file so the next read sees changes (and a changed home)."""
        self._parser = None
        if self._frozen is not None:
            self._frozen.clear()

    def freeze(self) -> None:
        """Read every declared value now and answer from memory from then on.

        For a process whose environment and file no longer change (a zygote): each try
        it forks then finds its settings in one dict instead of reading the environment,
        which in a fork means fewer pages copied. :meth:`reload` still re-reads.
        """
        self._frozen = {}
        for section, options in DEFAULTS.items():
            for key in options:
                try:
                    self.get(section, key)
                except ConfigError:
                    continue  # read (and reported) again by whoever needs it

    def _file(self) -> configparser.ConfigParser:
        # Keyed by the raw environment values: building Paths on every read made config
        # lookups the main cost of constructing operators in a large DAG file.
        location = (os.environ.get(CONFIG_FILE_ENV), os.environ.get(HOME_ENV))
        if self._parser is not None and self._location == location:
            return self._parser
        path = config_file_path()
        parser = configparser.ConfigParser(interpolation=None)
        if path.exists():
            try:
                with path.open(encoding="utf-8") as handle:
                    parser.read_file(handle)
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read config file {path}: {exc}") from None
            except configparser.Error as exc:
                first = str(exc).splitlines()[0]
                raise ConfigError(f"config file {path} is not valid INI: {first}") from None
        self._parser, self._path, self._location = parser, path, location
        return parser

    # -- reading -----------------------------------------------------------------
    def has_option(self, section: str, key: str) -> bool:
        return self._raw(section, key) is not None

    def _raw(self, section: str, key: str) -> str | None:
        env_name = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
        if env_name in os.environ:
            return os.environ[env_name]
        parser = self._file()
        if parser.has_option(section, key):
            return parser.get(section, key)
        return None

    def _lookup(self, section: str, key: str, kind: str | None, fallback: Any) -> Any:
        section, key = section.lower(), key.lower()
        frozen = self._frozen
        if frozen is not None and (section, key, kind) in frozen:
            return frozen[(section, key, kind)]
        option = DEFAULTS.get(section, {}).get(key)
        raw = self._raw(section, key)
        if raw is None:
            if option is None:
                if fallback is _MISSING:
                    raise ConfigError(f"[{section}] {key} is not set and has no default")
                return fallback
            raw = option.default
        if isinstance(raw, str) and "{CROSSDOCK_HOME}" in raw:
            raw = raw.replace("{CROSSDOCK_HOME}", str(crossdock_home()))
        converted_kind = kind or (option.kind if option else "str")
        value = _convert(section, key, raw, converted_kind)
        if frozen is not None and converted_kind != "json":  # a JSON value may be mutated by its reader
            frozen[(section, key, kind)] = value
        return value

    def get(self, section: str, key: str, fallback: Any = None) -> Any:
        """The value in its declared type (strings for undeclared keys)."""
        return self._lookup(section, key, None, _MISSING if fallback is None else fallback)

    def getstr(self, section: str, key: str, fallback: Any = None) -> str:
        value = self._lookup(section, key, "str", _MISSING if fallback is None else fallback)
        return str(value)

    def getint(self, section: str, key: str, fallback: Any = None) -> int:
        return self._lookup(section, key, "int", _MISSING if fallback is None else fallback)

    def getfloat(self, section: str, key: str, fallback: Any = None) -> float:
        return self._lookup(section, key, "float", _MISSING if fallback is None else fallback)

    def getboolean(self, section: str, key: str, fallback: Any = None) -> bool:
        return self._lookup(section, key, "bool", _MISSING if fallback is None else fallback)

    def getjson(self, section: str, key: str, fallback: Any = None) -> Any:
        return self._lookup(section, key, "json", _MISSING if fallback is None else fallback)

    def getsection(self, section: str) -> dict[str, Any]:
        """Every key of a section: declared ones with defaults, plus any set in the file or env."""
        section = section.lower()
        keys = set(DEFAULTS.get(section, {}))
        parser = self._file()
        if parser.has_section(section):
            keys.update(parser.options(section))
        prefix = f"{ENV_PREFIX}{section.upper()}__"
        keys.update(name[len(prefix):].lower() for name in os.environ if name.startswith(prefix))
        return {key: self.get(section, key, fallback="") for key in sorted(keys)}

    def as_dict(self) -> dict[str, dict[str, Any]]:
        sections = set(DEFAULTS) | set(self._file().sections())
        sections.update(
            name[len(ENV_PREFIX):].split("__", 1)[0].lower()
            for name in os.environ
            if name.startswith(ENV_PREFIX) and "__" in name[len(ENV_PREFIX):]
        )
        return {section: self.getsection(section) for section in sorted(sections)}

    def validate(self) -> None:
        """Read every declared key once, so a bad value fails at start-up, naming the key."""
        for section, options in DEFAULTS.items():
            for key in options:
                self.get(section, key)
        for section, key in (("core", "parallelism"), ("core", "max_active_tasks_per_dag")):
            if self.getint(section, key) < 1:
                raise ConfigError(f"[{section}] {key} must be at least 1")


_MISSING = object()

#: The process-wide configuration. Tests and the CLI call ``conf.reload()`` after
#: changing ``CROSSDOCK_HOME`` or the file.
conf = CrossdockConfig()


def register_defaults(section: str, options: dict[str, Option]) -> None:
    """Let an executor module declare its own section (``[celery]``, ``[kubernetes_executor]``)."""
    DEFAULTS.setdefault(section, {}).update(options)


def write_default_config(path: Path) -> None:
    """Write a commented config file listing every key and its default."""
    lines = ["# crossdock configuration; every key shows its default.", ""]
    for section, options in DEFAULTS.items():
        lines.append(f"[{section}]")
        for key, option in options.items():
            lines.append(f"# {option.help}")
            default = option.default
            if isinstance(default, bool):
                default = str(default)
            lines.append(f"# {key} = {default}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
