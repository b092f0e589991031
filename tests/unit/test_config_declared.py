"""Configuration declared whole: every section is known without importing the code that reads it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from crossdock.cli.main import main
from crossdock.configuration import DEFAULTS, ConfigError, Option, conf, register_defaults


def crossdock(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_reading_the_configuration_imports_no_executor_celery_or_kubernetes_client():
    probe = ("import sys, crossdock.configuration as c; c.conf.get('celery', 'broker_url'); "
             "print(sorted(m for m in sys.modules if 'celery' in m or m.split('.')[0] == 'kubernetes' "
             "or m.startswith('crossdock.executors') or m.startswith('crossdock.kubernetes')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_config_list_defaults_shows_every_section_of_every_executor(capsys):
    code, out, _ = crossdock(capsys, "config", "list", "--defaults")
    assert code == 0
    for section in ("core", "celery", "celery_broker_transport_options", "kubernetes_executor",
                    "celery_kubernetes_executor", "executor_routing", "kubernetes_local_runtime",
                    "local_executor"):
        assert f"[{section}]\n" in out
    assert "# broker_url = filesystem://localhost/{CROSSDOCK_HOME}/celery-broker" in out
    assert "# namespace = default" in out


def test_config_get_answers_for_executor_sections_and_a_typo_is_still_refused(capsys, monkeypatch):
    code, out, _ = crossdock(capsys, "config", "get", "celery", "broker_url")
    assert code == 0 and out.strip().startswith("filesystem://localhost/")
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__NAMESPACE", "batch")
    assert crossdock(capsys, "config", "get", "kubernetes_executor", "namespace")[1].strip() == "batch"
    code, _, err = crossdock(capsys, "config", "get", "celery", "brokr_url")
    assert code == 1 and "[celery] brokr_url" in err


def test_a_third_party_executor_can_still_register_its_section(capsys, monkeypatch):
    monkeypatch.setitem(DEFAULTS, "acme_executor", {})
    register_defaults("acme_executor", {"region": Option("eu-west", "str", "Where Acme runs tasks.")})
    assert conf.get("acme_executor", "region") == "eu-west"
    code, out, _ = crossdock(capsys, "config", "list", "--defaults")
    assert "[acme_executor]\n# Where Acme runs tasks.\n# region = eu-west" in out
    monkeypatch.setenv("CROSSDOCK__ACME_EXECUTOR__REGION", "us-east")
    assert crossdock(capsys, "config", "get", "acme_executor", "region")[1].strip() == "us-east"


def test_a_bad_declared_value_names_its_key_even_if_its_module_was_never_imported(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_LOCAL_RUNTIME__HISTORY_LIMIT", "plenty")
    with pytest.raises(ConfigError, match=r"\[kubernetes_local_runtime\] history_limit = 'plenty'"):
        conf.get("kubernetes_local_runtime", "history_limit")


def test_scheduler_start_up_rejects_a_bad_celery_value_before_any_executor_loads(monkeypatch):
    from crossdock.cli.scheduler_command import build_scheduler
    from crossdock.executors import executor_loader

    def no_executors_yet(*args, **kwargs):
        raise AssertionError("executors were loaded before the configuration was checked")

    monkeypatch.setattr(executor_loader, "load_executors", no_executors_yet)
    monkeypatch.setenv("CROSSDOCK__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("CROSSDOCK__CELERY__WORKER_CONCURRENCY", "abc")
    with pytest.raises(ConfigError) as error:
        build_scheduler()
    assert str(error.value) == "[celery] worker_concurrency = 'abc' is not a valid int: " \
                               "invalid literal for int() with base 10: 'abc'"


@pytest.mark.parametrize("executor, section, key, value", [
    ("CeleryExecutor", "celery_broker_transport_options", "visibility_timeout", "soon"),
    ("CeleryKubernetesExecutor", "kubernetes_executor", "delete_worker_pods", "perhaps"),
    ("CeleryKubernetesExecutor", "celery", "task_acks_late", "perhaps"),
    ("LocalExecutor,k8s:crossdock.executors.kubernetes_executor.KubernetesExecutor",
     "kubernetes_executor", "worker_pods_creation_batch_size", "many"),
    ("LocalExecutor", "local_executor", "fork", "perhaps"),
])
def test_validate_checks_the_sections_of_the_configured_executors(monkeypatch, executor, section, key, value):
    monkeypatch.setenv("CROSSDOCK__CORE__EXECUTOR", executor)
    monkeypatch.setenv(f"CROSSDOCK__{section.upper()}__{key.upper()}", value)
    with pytest.raises(ConfigError, match=rf"^\[{section}\] {key} = '{value}'"):
        conf.validate()


def test_validate_leaves_the_sections_of_executors_not_configured_alone(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CORE__EXECUTOR", "LocalExecutor")
    monkeypatch.setenv("CROSSDOCK__CELERY__WORKER_CONCURRENCY", "abc")
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS", "perhaps")
    conf.validate()


def test_validate_checks_a_section_another_package_registered(monkeypatch):
    monkeypatch.setitem(DEFAULTS, "acme_executor", {})
    register_defaults("acme_executor", {"workers": Option(2, "int", "Acme workers.")})
    monkeypatch.setenv("CROSSDOCK__ACME_EXECUTOR__WORKERS", "two")
    with pytest.raises(ConfigError, match=r"\[acme_executor\] workers = 'two'"):
        conf.validate()
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_LOCAL_RUNTIME__PORT", "http")
    monkeypatch.setenv("CROSSDOCK__ACME_EXECUTOR__WORKERS", "2")
    conf.validate()
    with pytest.raises(ConfigError, match=r"\[kubernetes_local_runtime\] port"):
        conf.validate(also=["kubernetes_local_runtime"])


def unknown_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "crossdock.configuration" and r.levelname == "WARNING"]


def test_a_misspelt_key_in_the_file_is_a_warning_with_a_suggestion(crossdock_home, caplog):
    from crossdock.configuration import CrossdockConfig

    (crossdock_home / "crossdock.cfg").write_text("[core]\nexectuor = CeleryExecutor\n[celeri]\nx = 1\n")
    config = CrossdockConfig()
    config.validate()
    config.validate()
    cfg = crossdock_home / "crossdock.cfg"
    assert unknown_warnings(caplog) == [
        f"config file {cfg}: [core] exectuor is not a crossdock setting; did you mean executor?",
        f"config file {cfg}: [celeri] is not a crossdock section; did you mean [celery]?",
    ]


def test_strict_config_turns_unknown_settings_into_one_error(crossdock_home, monkeypatch):
    (crossdock_home / "crossdock.cfg").write_text("[core]\nstrict_config = True\nparalelism = 4\n")
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__HEARTBEAT_SEC", "1")
    conf.reload()
    with pytest.raises(ConfigError) as error:
        conf.validate()
    message = str(error.value)
    assert "\n" not in message
    assert "[core] paralelism is not a crossdock setting; did you mean parallelism?" in message
    assert ("environment variable CROSSDOCK__SCHEDULER__HEARTBEAT_SEC: [scheduler] heartbeat_sec is not a "
            "crossdock setting; did you mean CROSSDOCK__SCHEDULER__SCHEDULER_HEARTBEAT_SEC?") in message
    assert "strict_config" in message


def test_an_unknown_environment_variable_is_reported_as_a_variable(monkeypatch, caplog):
    from crossdock.configuration import CrossdockConfig

    monkeypatch.setenv("CROSSDOCK__CORE__EXECTUOR", "CeleryExecutor")
    monkeypatch.setenv("CROSSDOCK__CELERYY__BROKER_URL", "redis://")
    monkeypatch.setenv("CROSSDOCK__PARALLELISM", "3")
    CrossdockConfig().validate()
    assert unknown_warnings(caplog) == [
        "environment variable CROSSDOCK__CELERYY__BROKER_URL: [celeryy] is not a crossdock section; "
        "did you mean CROSSDOCK__CELERY__BROKER_URL?",
        "environment variable CROSSDOCK__CORE__EXECTUOR: [core] exectuor is not a crossdock setting; "
        "did you mean CROSSDOCK__CORE__EXECUTOR?",
        "environment variable CROSSDOCK__PARALLELISM is not of the form CROSSDOCK__SECTION__KEY",
    ]


def test_known_settings_open_sections_and_registered_ones_are_not_reported(crossdock_home, monkeypatch, caplog):
    from crossdock.configuration import CrossdockConfig

    monkeypatch.setitem(DEFAULTS, "acme_executor", {})
    register_defaults("acme_executor", {"region": Option("eu", "str", "Where Acme runs.")})
    (crossdock_home / "crossdock.cfg").write_text(
        "[acme_executor]\nregion = us\n[celery_broker_transport_options]\nmax_connections = 20\n")
    monkeypatch.setenv("CROSSDOCK__CORE__STRICT_CONFIG", "True")
    monkeypatch.setenv("CROSSDOCK__CELERY_BROKER_TRANSPORT_OPTIONS__SENTINEL_KWARGS", "{}")
    # What crossdock's own commands set for the processes they start (the test fixture
    # sets [scheduler] standby_takeover_seconds too).
    for name, value in {"CROSSDOCK__KUBERNETES_EXECUTOR__CONFIG_FILE": "/tmp/kubeconfig",
                        "CROSSDOCK__KUBERNETES_EXECUTOR__SHARE_LOCAL_ENVIRONMENT": "True",
                        "CROSSDOCK__CORE__DAGS_FOLDER": str(crossdock_home / "dags"),
                        "CROSSDOCK__LOGGING__BASE_LOG_FOLDER": str(crossdock_home / "logs"),
                        "CROSSDOCK__SCHEDULER__DAG_DIR_LIST_INTERVAL": "0",
                        "CROSSDOCK__LOGGING__LOGGING_LEVEL": "INFO"}.items():
        monkeypatch.setenv(name, value)
    config = CrossdockConfig()
    assert config.unknown_settings() == []
    config.validate()
    assert unknown_warnings(caplog) == []


def test_config_get_suggests_the_key_meant(capsys):
    code, _, err = crossdock(capsys, "config", "get", "celery", "brokr_url")
    assert code == 1 and "did you mean broker_url?" in err


def test_the_celery_section_is_read_once_into_a_frozen_settings_object(monkeypatch):
    import dataclasses

    from crossdock.executors.celery_config import CelerySettings

    monkeypatch.setenv("CROSSDOCK__CELERY__WORKER_CONCURRENCY", "3")
    monkeypatch.setenv("CROSSDOCK__CELERY__EXTRA_CELERY_CONFIG", '{"worker_max_tasks_per_child": 5}')
    celery = CelerySettings.from_conf()
    assert celery.worker_concurrency == 3 and celery.pool == "prefork" and celery.task_acks_late is True
    assert celery.extra_celery_config == {"worker_max_tasks_per_child": 5}
    with pytest.raises(dataclasses.FrozenInstanceError):
        celery.worker_concurrency = 4
    monkeypatch.setenv("CROSSDOCK__CELERY__OPERATION_TIMEOUT", "0")
    with pytest.raises(ConfigError, match=r"\[celery\] operation_timeout must be positive"):
        CelerySettings.from_conf()


@pytest.mark.parametrize("backend, crossdock_own", [
    ("db+sqlite:///{home}/results.db", {"connect_args": {"timeout": 30}}),
    ("db+postgresql+psycopg://crossdock@127.0.0.1:1/results", {"pool_pre_ping": True}),
])
def test_result_backend_engine_options_reach_the_celery_app(crossdock_home, monkeypatch, backend, crossdock_own):
    from crossdock.executors.celery_app import create_celery_app

    monkeypatch.setenv("CROSSDOCK__CELERY__RESULT_BACKEND", backend.format(home=crossdock_home))
    monkeypatch.setenv("CROSSDOCK__CELERY__RESULT_BACKEND_SQLALCHEMY_ENGINE_OPTIONS",
                       '{"pool_recycle": 1800, "pool_pre_ping": false}')
    app = create_celery_app()
    assert app.conf.database_engine_options == {**crossdock_own, "pool_recycle": 1800, "pool_pre_ping": False}


def test_result_backend_engine_options_that_are_not_an_object_fail_naming_the_key(monkeypatch):
    from crossdock.executors.celery_app import celery_settings

    monkeypatch.setenv("CROSSDOCK__CORE__EXECUTOR", "CeleryExecutor")
    key = "[celery] result_backend_sqlalchemy_engine_options"
    monkeypatch.setenv("CROSSDOCK__CELERY__RESULT_BACKEND_SQLALCHEMY_ENGINE_OPTIONS", '["pool_recycle", 1800]')
    for check in (celery_settings, conf.validate):
        with pytest.raises(ConfigError, match=re.escape(f"{key} must be a JSON object, got")):
            check()
    monkeypatch.setenv("CROSSDOCK__CELERY__RESULT_BACKEND_SQLALCHEMY_ENGINE_OPTIONS", "{pool_recycle: 1800}")
    with pytest.raises(ConfigError, match=re.escape(f"{key} = '{{pool_recycle: 1800}}' is not a valid JSON object")):
        conf.validate()


def test_a_misspelt_section_variable_suggests_the_variable_only_when_that_key_exists(monkeypatch, caplog):
    from crossdock.configuration import CrossdockConfig

    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTER__NAMESPACE", "batch")
    monkeypatch.setenv("CROSSDOCK__LOCAL_EXECUTER__WORKERS", "2")
    CrossdockConfig().validate()
    assert unknown_warnings(caplog) == [
        "environment variable CROSSDOCK__KUBERNETES_EXECUTER__NAMESPACE: [kubernetes_executer] is not a "
        "crossdock section; did you mean CROSSDOCK__KUBERNETES_EXECUTOR__NAMESPACE?",
        "environment variable CROSSDOCK__LOCAL_EXECUTER__WORKERS: [local_executer] is not a crossdock "
        "section; did you mean [local_executor]?",
    ]
