"""Configuration: file, environment overrides, defaults, and one-line errors naming the key."""

from __future__ import annotations

import pytest

from crossdock.configuration import ConfigError, conf, config_file_path
from crossdock.executors.executor_loader import parse_executor_names


def write_config(home, text):
    (home / "crossdock.cfg").write_text(text)
    conf.reload()


def test_defaults_are_documented_values(crossdock_home):
    assert conf.getint("core", "parallelism") == 32
    assert conf.getstr("core", "default_queue") == "default"
    assert conf.getstr("core", "executor") == "LocalExecutor"
    assert conf.getstr("core", "dags_folder") == str(crossdock_home / "dags")
    assert conf.getstr("database", "sql_alchemy_conn") == f"sqlite:///{crossdock_home}/crossdock.db"
    assert conf.getfloat("scheduler", "task_queued_timeout") == 600.0


def test_file_overrides_defaults_and_env_overrides_file(crossdock_home, monkeypatch):
    write_config(crossdock_home, "[core]\nparallelism = 8\ndefault_queue = fast\n")
    assert conf.getint("core", "parallelism") == 8
    monkeypatch.setenv("CROSSDOCK__CORE__PARALLELISM", "4")
    assert conf.getint("core", "parallelism") == 4
    assert conf.getstr("core", "default_queue") == "fast"
    assert config_file_path() == crossdock_home / "crossdock.cfg"


def test_bad_integer_names_section_and_key(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CORE__PARALLELISM", "lots")
    with pytest.raises(ConfigError) as error:
        conf.validate()
    message = str(error.value)
    assert "[core] parallelism" in message and "lots" in message and "\n" not in message


def test_bad_boolean_is_rejected(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__LOCAL_EXECUTOR__FORK", "perhaps")
    with pytest.raises(ConfigError, match=r"\[local_executor\] fork"):
        conf.getboolean("local_executor", "fork")


def test_parallelism_below_one_is_rejected(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CORE__PARALLELISM", "0")
    with pytest.raises(ConfigError, match=r"\[core\] parallelism must be at least 1"):
        conf.validate()


def test_unreadable_file_gives_one_line(crossdock_home):
    write_config(crossdock_home, "this is not ini\n")
    with pytest.raises(ConfigError) as error:
        conf.getint("core", "parallelism")
    assert "not valid INI" in str(error.value) and "\n" not in str(error.value)


def test_unknown_executor_name_is_a_config_error(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CORE__EXECUTOR", "QuantumExecutor")
    with pytest.raises(ConfigError, match=r"\[core\] executor: unknown executor 'QuantumExecutor'"):
        parse_executor_names()


def test_executor_list_short_names_dotted_paths_and_aliases():
    names = parse_executor_names("LocalExecutor, fast:crossdock.executors.local_executor.LocalExecutor")
    assert [n.alias for n in names] == ["LocalExecutor", "fast"]
    assert names[1].module_path == "crossdock.executors.local_executor.LocalExecutor"
    with pytest.raises(ConfigError, match="twice"):
        parse_executor_names("LocalExecutor,LocalExecutor")


def test_dotted_path_that_is_not_an_executor_is_rejected():
    from crossdock.executors.executor_loader import load_executors

    with pytest.raises(ConfigError, match="not a BaseExecutor subclass"):
        load_executors("crossdock.configuration.CrossdockConfig")
    with pytest.raises(ConfigError, match="cannot import"):
        load_executors("nowhere.to.be.Found")


def test_a_frozen_configuration_keeps_its_values_until_reloaded(monkeypatch):
    """A zygote freezes its configuration so each forked try reads it from memory; what
    it froze must be what it read, and a reload must still see new values."""
    from crossdock.configuration import CrossdockConfig

    config = CrossdockConfig()
    monkeypatch.setenv("CROSSDOCK__CORE__PARALLELISM", "7")
    config.freeze()
    assert config.getint("core", "parallelism") == 7
    monkeypatch.setenv("CROSSDOCK__CORE__PARALLELISM", "9")
    assert config.getint("core", "parallelism") == 7
    config.reload()
    assert config.getint("core", "parallelism") == 9
    # A bad value is not remembered: every reader gets the error naming the key.
    monkeypatch.setenv("CROSSDOCK__CORE__PARALLELISM", "many")
    config.reload()
    for _ in range(2):
        with pytest.raises(ConfigError, match="parallelism"):
            config.getint("core", "parallelism")
