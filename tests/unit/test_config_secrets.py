"""Secrets stay secret: masked in ``config list`` and logs, never handed to pods or tries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from crossdock.config_secrets import (
    environment_for_try, environment_for_worker, mask_setting, redact_url, scrub_try_environment,
)

DB_URL = "postgresql+psycopg://crossdock:db-pa55word@db.internal:5432/meta"
BROKER_URL = "amqp://worker:br0ker-pw@mq.internal:5672//"


@pytest.mark.parametrize("url, shown", [
    (DB_URL, "postgresql+psycopg://crossdock:***@db.internal:5432/meta"),
    ("redis://:only-a-password@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("db+postgresql://u:p%40ss@h/db", "db+postgresql://u:***@h/db"),
    ("sentinel://:a@h1:26379;sentinel://:b@h2:26379", "sentinel://:***@h1:26379;sentinel://:***@h2:26379"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("postgresql://postgres@127.0.0.1/test", "postgresql://postgres@127.0.0.1/test"),
    ('{"backend": "redis://:x@h/1"}', '{"backend": "redis://:***@h/1"}'),
])
def test_urls_lose_their_passwords_and_keep_everything_else(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize("section, key, value, shown", [
    ("celery", "task_signing_key", "k", "***"),
    ("celery", "flower_basic_auth", "admin:pw", "***"),
    ("webserver", "secret_key", "s", "***"),
    ("smtp", "smtp_password", "p", "***"),
    ("kubernetes_executor", "api_token", "t", "***"),
    ("database", "sql_alchemy_conn_cmd", "cat /run/secret", "***"),
    ("database", "sql_alchemy_conn", DB_URL, "postgresql+psycopg://crossdock:***@db.internal:5432/meta"),
    ("celery", "broker_url", BROKER_URL, "amqp://worker:***@mq.internal:5672//"),
    ("celery", "task_signing_key", "", ""),  # unset stays visibly unset
    ("core", "dags_folder", "/srv/dags", "/srv/dags"),
])
def test_settings_are_masked_by_name_and_by_url(section, key, value, shown):
    assert mask_setting(section, key, value) == shown


def test_a_try_inherits_no_database_broker_or_secret_settings():
    environ = {
        "CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN": DB_URL,
        "CROSSDOCK__DATABASE__SQL_ALCHEMY_POOL_SIZE": "5",
        "CROSSDOCK__CELERY__BROKER_URL": BROKER_URL,
        "CROSSDOCK__CELERY__TASK_SIGNING_KEY": "k",
        "CROSSDOCK__CELERY_BROKER_TRANSPORT_OPTIONS__SENTINEL_KWARGS": '{"password": "x"}',
        "CROSSDOCK__MY_PLUGIN__API_TOKEN": "t",
        "CROSSDOCK__MY_PLUGIN__ENDPOINT": "https://user:pw@api.example/",
        "CROSSDOCK__CORE__DAGS_FOLDER": "/srv/dags",
        "CROSSDOCK__LOGGING__LOGGING_LEVEL": "DEBUG",
        "CROSSDOCK__MY_PLUGIN__REGION": "eu",
        "PATH": "/usr/bin",
        "MY_OWN_VARIABLE": "kept: the user's, not crossdock's",
    }
    assert environment_for_try(environ) == {
        "CROSSDOCK__CORE__DAGS_FOLDER": "/srv/dags",
        "CROSSDOCK__LOGGING__LOGGING_LEVEL": "DEBUG",
        "CROSSDOCK__MY_PLUGIN__REGION": "eu",
        "PATH": "/usr/bin",
        "MY_OWN_VARIABLE": "kept: the user's, not crossdock's",
    }
    scrubbed = dict(environ)
    removed = scrub_try_environment(scrubbed)
    assert scrubbed == environment_for_try(environ)
    assert "CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN" in removed


def test_a_worker_keeps_its_broker_settings_but_not_the_metadata_database():
    environ = {"CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN": DB_URL, "CROSSDOCK__CELERY__BROKER_URL": BROKER_URL,
               "CROSSDOCK__CORE__DAGS_FOLDER": "/srv/dags"}
    assert environment_for_worker(environ) == {"CROSSDOCK__CELERY__BROKER_URL": BROKER_URL,
                                               "CROSSDOCK__CORE__DAGS_FOLDER": "/srv/dags"}


def test_config_list_masks_secrets_and_config_get_prints_the_one_value_asked_for(crossdock_home):
    env = {"CROSSDOCK_HOME": str(crossdock_home), "PATH": "/usr/bin:/bin",
           "CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN": DB_URL,
           "CROSSDOCK__CELERY__BROKER_URL": BROKER_URL,
           "CROSSDOCK__CELERY__TASK_SIGNING_KEY": "the-signing-key",
           "CROSSDOCK__CELERY__FLOWER_BASIC_AUTH": "admin:flower-pw"}
    listed = subprocess.run([sys.executable, "-m", "crossdock.cli.main", "config", "list"], env=env,
                            capture_output=True, text=True, check=True).stdout
    for secret in ("db-pa55word", "br0ker-pw", "the-signing-key", "flower-pw"):
        assert secret not in listed
    assert "sql_alchemy_conn = postgresql+psycopg://crossdock:***@db.internal:5432/meta" in listed
    assert "broker_url = amqp://worker:***@mq.internal:5672//" in listed
    assert "task_signing_key = ***" in listed
    got = subprocess.run([sys.executable, "-m", "crossdock.cli.main", "config", "get", "database",
                          "sql_alchemy_conn"], env=env, capture_output=True, text=True, check=True).stdout
    assert got.strip() == DB_URL


def test_the_executors_log_line_masks_like_config_list():
    from crossdock.executors.celery_executor import _redact

    assert _redact(BROKER_URL) == redact_url(BROKER_URL) == "amqp://worker:***@mq.internal:5672//"
