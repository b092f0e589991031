"""crossdock configuration: an INI file, environment overrides and documented defaults.

Lookup order for ``[section] key``:

1. the environment variable ``CROSSDOCK__SECTION__KEY`` (upper case, double underscores),
2. ``$CROSSDOCK_HOME/crossdock.cfg`` (``CROSSDOCK_HOME`` defaults to ``~/crossdock``),
3. the default in :data:`DEFAULTS`.

Every key crossdock reads is declared in :mod:`crossdock.config_schema` with its type and
meaning, so a bad value fails with one line naming the key instead of a traceback deep in
the code that happened to read it first.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from crossdock.config_schema import OPEN_SECTIONS, SCHEMA, Option, sections_for_executors
from crossdock.config_unknown import unknown_in_environment, unknown_in_file
from crossdock.exceptions import UserFacingError

ENV_PREFIX = "CROSSDOCK__"
HOME_ENV = "CROSSDOCK_HOME"
CONFIG_FILE_ENV = "CROSSDOCK_CONFIG"
DEFAULT_HOME = "~/crossdock"
CONFIG_FILE_NAME = "crossdock.cfg"

log = logging.getLogger("crossdock.configuration")


class ConfigError(UserFacingError):
    """A configuration value is missing, unreadable or of the wrong type.

    The message is always one line that names the section and key.
    """


#: Every key crossdock reads, by section: the declared ones (:mod:`crossdock.config_schema`)
#: and any a third-party executor adds with :func:`register_defaults`.
DEFAULTS: dict[str, dict[str, Option]] = {section: dict(options) for section, options in SCHEMA.items()}


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
        if kind == "json_object":
            value = json.loads(text) if text else None
            if value is None:  # empty or null: no options
                return {}
            if not isinstance(value, dict):
                raise ConfigError(f"[{section}] {key} must be a JSON object, got {raw!r}")
            return value
    except (ValueError, json.JSONDecodeError) as exc:
        label = "JSON object" if kind == "json_object" else kind
        raise ConfigError(f"[{section}] {key} = {raw!r} is not a valid {label}: {exc}") from None
    return raw


class CrossdockConfig:
    """Reads configuration values; re-reads the file when :meth:`reload` is called."""

    def __init__(self) -> None:
        self._parser: configparser.ConfigParser | None = None
        self._path: Path | None = None
        self._location: tuple[str | None, str | None] | None = None
        #: Values already read, once :meth:`freeze` was called (None: not frozen).
        self._frozen: dict[tuple[str, str, str | None], Any] | None = None
        #: Unknown settings already warned about: each is reported once per process.
        self._reported: set[str] = set()

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
        if converted_kind == "json" and option is not None and option.kind == "json_object":
            converted_kind = "json_object"  # what is declared an object stays one, whoever reads it
        value = _convert(section, key, raw, converted_kind)
        if frozen is not None and not converted_kind.startswith("json"):  # its reader may mutate it
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

    def validate(self, *, also: Iterable[str] = ()) -> None:
        """Read every key start-up depends on, so a bad value fails now, naming the key.

        Checked: the sections every command needs, those of the executors ``[core] executor``
        names (known by name, so no executor is imported to find out), every section another
        package registered, and the sections in ``also``. A section of an executor that is
        not configured is left alone, as it is never read.

        Keys and sections nobody declared are reported first: a warning each, or one
        error under ``[core] strict_config``.
        """
        self.check_unknown()
        for section in self.sections_to_validate(also):
            for key in DEFAULTS.get(section, {}):
                self.get(section, key)
        for section, key in (("core", "parallelism"), ("core", "max_active_tasks_per_dag")):
            if self.getint(section, key) < 1:
                raise ConfigError(f"[{section}] {key} must be at least 1")

    def sections_to_validate(self, also: Iterable[str] = ()) -> list[str]:
        sections = sections_for_executors(self.getstr("core", "executor"))
        registered = [section for section in DEFAULTS if section not in SCHEMA]
        return list(dict.fromkeys([*sections, *registered, *also]))

    def unknown_settings(self) -> list[str]:
        """What the config file and ``CROSSDOCK__`` variables set that nothing declares."""
        parser = self._file()
        inherited = set(parser.defaults())
        in_file = {section: [key for key in parser.options(section) if key not in inherited]
                   for section in parser.sections()}
        messages = [f"config file {self._path}: {message}"
                    for message in unknown_in_file(DEFAULTS, OPEN_SECTIONS, in_file)]
        return messages + unknown_in_environment(DEFAULTS, OPEN_SECTIONS, sorted(os.environ), ENV_PREFIX)

    def check_unknown(self) -> None:
        """Warn once per process about each unknown setting, or fail under strict_config."""
        messages = self.unknown_settings()
        if messages and self.getboolean("core", "strict_config"):
            raise ConfigError(" | ".join(messages) + " ([core] strict_config is on)")
        for message in messages:
            if message not in self._reported:
                self._reported.add(message)
                log.warning("%s", message)


_MISSING = object()

#: The process-wide configuration. Tests and the CLI call ``conf.reload()`` after
#: changing ``CROSSDOCK_HOME`` or the file.
conf = CrossdockConfig()


def register_defaults(section: str, options: dict[str, Option]) -> None:
    """Let an executor of another package declare its own section (or add keys to one).

    crossdock's own sections are all in :mod:`crossdock.config_schema`; what is registered
    here is listed, checked and treated as known just the same.
    """
    DEFAULTS.setdefault(section, {}).update(options)


def default_config_text() -> str:
    """A commented config file listing every key, its meaning and its default."""
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
    return "\n".join(lines)


def write_default_config(path: Path) -> None:
    """Write :func:`default_config_text` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(default_config_text(), encoding="utf-8")
