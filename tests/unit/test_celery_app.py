"""The Celery app built from [celery]: serverless defaults, JSON only, built once."""

from __future__ import annotations

import pytest

from crossdock.configuration import DEFAULTS, ConfigError, conf
from crossdock.executors import celery_app
from crossdock.executors.celery_app import (
    DEFAULT_VISIBILITY_TIMEOUT,
    EXECUTE_COMMAND_TASK,
    celery_settings,
    get_celery_app,
)


def set_conf(monkeypatch, **values):
    for name, value in values.items():
        section, key = name.split("__", 1)
        monkeypatch.setenv(f"CROSSDOCK__{section.upper()}__{key.upper()}", str(value))
    conf.reload()


def test_celery_keys_are_declared_with_the_issue_defaults():
    celery = DEFAULTS["celery"]
    assert celery["worker_concurrency"].default == 16
    assert celery["worker_prefetch_multiplier"].default == 1
    assert celery["task_acks_late"].default is True
    assert celery["task_track_started"].default is True
    assert celery["operation_timeout"].default == 1.0
    assert celery["sync_parallelism"].default == 0
    assert celery["task_publish_max_retries"].default == 3
    assert celery["pool"].default == "prefork"
    assert celery["execute_tasks_new_python_interpreter"].default is False
    assert "visibility_timeout" in DEFAULTS["celery_broker_transport_options"]


def test_defaults_need_no_server_and_live_under_crossdock_home(crossdock_home):
    settings = celery_settings()
    assert settings["broker_url"] == f"filesystem://localhost/{crossdock_home}/celery-broker"
    assert settings["result_backend"] == f"db+sqlite:///{crossdock_home}/celery-results.db"
    options = settings["broker_transport_options"]
    assert options["data_folder_in"] == options["data_folder_out"] == f"{crossdock_home}/celery-broker/queue"
    assert (crossdock_home / "celery-broker" / "queue").is_dir()
    assert (crossdock_home / "celery-broker" / "control").is_dir()
    assert settings["task_default_queue"] == "default"
    assert settings["task_acks_late"] is True
    assert settings["worker_prefetch_multiplier"] == 1


def test_json_only_even_when_extra_config_asks_for_pickle(monkeypatch):
    set_conf(monkeypatch, celery__extra_celery_config='{"task_serializer": "pickle", '
                                                      '"accept_content": ["pickle", "json"], '
                                                      '"worker_max_tasks_per_child": 50}')
    settings = celery_settings()
    assert settings["task_serializer"] == "json"
    assert settings["result_serializer"] == "json"
    assert settings["accept_content"] == ["json"]
    assert settings["worker_max_tasks_per_child"] == 50


def test_extra_config_that_is_not_an_object_names_the_key(monkeypatch):
    set_conf(monkeypatch, celery__extra_celery_config="[1, 2]")
    with pytest.raises(ConfigError, match=r"\[celery\] extra_celery_config"):
        celery_settings()


@pytest.mark.parametrize("broker, expected", [
    ("redis://127.0.0.1:6379/0", DEFAULT_VISIBILITY_TIMEOUT),
    ("amqp://guest:guest@127.0.0.1:5672//", None),
])
def test_visibility_timeout_defaults_only_for_brokers_that_emulate_acks(monkeypatch, broker, expected):
    set_conf(monkeypatch, celery__broker_url=broker)
    assert celery_settings()["broker_transport_options"].get("visibility_timeout") == expected


def test_transport_options_from_config_are_passed_typed(monkeypatch):
    set_conf(monkeypatch, celery__broker_url="redis://127.0.0.1:6379/0",
             celery_broker_transport_options__visibility_timeout="30",
             celery_broker_transport_options__global_keyprefix="team_a")
    options = celery_settings()["broker_transport_options"]
    assert options["visibility_timeout"] == 30
    assert options["global_keyprefix"] == "team_a"


def test_an_airflow_postgres_backend_url_uses_psycopg3_when_psycopg2_is_missing(monkeypatch):
    pytest.importorskip("psycopg")
    try:
        import psycopg2  # noqa: F401
        pytest.skip("psycopg2 is installed; the URL is used as given")
    except ImportError:
        pass
    set_conf(monkeypatch, celery__result_backend="db+postgresql://postgres@127.0.0.1/test")
    assert celery_settings()["result_backend"] == "db+postgresql+psycopg://postgres@127.0.0.1/test"


def test_non_positive_operation_timeout_is_refused(monkeypatch):
    set_conf(monkeypatch, celery__operation_timeout="0")
    with pytest.raises(ConfigError, match="operation_timeout"):
        celery_settings()


def test_the_app_is_built_once_and_rebuilt_when_the_broker_changes(monkeypatch):
    first = get_celery_app()
    assert get_celery_app() is first
    assert EXECUTE_COMMAND_TASK in first.tasks
    set_conf(monkeypatch, celery__broker_url="redis://127.0.0.1:6379/5")
    second = get_celery_app()
    assert second is not first
    assert second.conf.broker_url == "redis://127.0.0.1:6379/5"
    assert get_celery_app() is second
    assert EXECUTE_COMMAND_TASK in second.tasks


def test_celery_minus_a_finds_the_app_by_module_attribute():
    assert celery_app.app is get_celery_app()
