"""Secrets a try reads are masked in its log, its print output, its failure reason and `tasks render`.

The values registered here stay registered in this test process (as in a try, there is no
way to unregister one), so each test uses values of its own.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from secrets_support import crossdock, no_stray_secret_variables  # noqa: F401
from crossdock.configuration import conf
from crossdock.runner.task_log import task_log_path
from crossdock.runner.task_runner import EXIT_SUCCESS, failure_reason_from_stderr, run_task_test
from crossdock.secrets.masking import (
    DEFAULT_SENSITIVE_NAMES,
    RedactingFilter,
    RedactingStream,
    is_sensitive_name,
    mask_secret,
    redact,
)


# -- the masker -----------------------------------------------------------------------------
def test_a_registered_value_is_redacted_wherever_it_appears_also_url_quoted():
    mask_secret("alpha-pa@ss/1")
    assert redact("x alpha-pa@ss/1 y alpha-pa%40ss%2F1 z") == "x *** y *** z"
    assert redact("nothing here") == "nothing here"


def test_short_values_and_values_under_harmless_names_are_not_masked():
    mask_secret("abcd")  # shorter than MIN_SECRET_LENGTH: would blank out ordinary words
    mask_secret("harmless-value-1", name="region")
    assert redact("abcd harmless-value-1") == "abcd harmless-value-1"


def test_dicts_are_walked_and_values_under_secret_names_masked():
    mask_secret({"host": "beta-host-1", "nested": {"api_key": "beta-key-1", "Access_Token": ["beta-tok-1"]}})
    assert redact("beta-host-1 beta-key-1 beta-tok-1") == "beta-host-1 *** ***"
    mask_secret({"anything": "beta-any-1"}, name="db_password")  # under a secret name, all of it is secret
    assert redact("beta-any-1") == "***"


def test_airflows_names_and_configured_ones_are_sensitive(monkeypatch):
    assert {"password", "secret", "passwd", "api_key", "apikey", "token", "private_key", "access_token",
            "authorization", "passphrase", "keyfile_dict", "service_account"} == DEFAULT_SENSITIVE_NAMES
    assert is_sensitive_name("DB_PASSWORD") and is_sensitive_name("github_token") and not is_sensitive_name("host")
    assert not is_sensitive_name("pin_code")
    monkeypatch.setenv("CROSSDOCK__CORE__SENSITIVE_VAR_CONN_NAMES", "pin, sauce")
    conf.reload()
    assert is_sensitive_name("pin_code") and is_sensitive_name("secret_SAUCE")


def test_the_logging_filter_redacts_message_arguments_and_traceback():
    mask_secret("gamma-secret-1")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.masking.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("connecting with %s", "gamma-secret-1")
        try:
            raise ValueError("bad gamma-secret-1")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "gamma-secret-1" not in text
    assert "connecting with ***" in text and "ValueError: bad ***" in text


def test_the_stream_wrapper_redacts_writes_and_passes_the_rest_through():
    mask_secret("delta-secret-1")
    target = io.StringIO()
    stream = RedactingStream(target)
    print("token", "delta-secret-1", file=stream)
    stream.writelines(["delta-secret-1\n"])
    assert target.getvalue() == "token ***\n***\n"
    assert stream.getvalue == target.getvalue


# -- a real try ------------------------------------------------------------------------------
DAG_FILE = """\
import logging, subprocess, sys
from crossdock import DAG, PythonOperator, BaseHook, Variable

def leaks():
    conn = BaseHook.get_connection("warehouse")
    print("password is", conn.password)
    print("uri is", conn.get_uri())
    logging.getLogger("my.task").warning("logged %s", conn.password)
    print("token", Variable.get("api_token"), file=sys.stderr)
    print("region", Variable.get("region"))
    raise ValueError(f"could not log in with {{conn.password}}")

def streams():
    before = type(sys.stdout).__name__
    Variable.get("api_token")
    after = type(sys.stdout).__name__
    with open({record!r}, "w") as handle:
        handle.write(before + " " + after)

with DAG("masking") as dag:
    PythonOperator(task_id="leaks", python_callable=leaks)
    PythonOperator(task_id="streams", python_callable=streams)
"""

PASSWORD = "Sup3r@Secret-pw"


@pytest.fixture
def masking_dag(tmp_path, crossdock_home, monkeypatch):
    folder = tmp_path / "dags"
    folder.mkdir()
    path = folder / "masking.py"
    path.write_text(DAG_FILE.format(record=str(tmp_path / "streams.txt")))
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(folder))
    monkeypatch.setenv("CROSSDOCK_CONN_WAREHOUSE", "postgresql://etl:Sup3r%40Secret-pw@db.internal:5432/dw")
    (crossdock_home / "variables.json").write_text(json.dumps({"api_token": "tok-0123456789",
                                                               "region": "eu-west-1"}))
    conf.reload()
    return path


def test_a_try_that_prints_and_logs_a_password_shows_only_stars(masking_dag, crossdock_home):
    """The real `crossdock tasks run` in a fresh interpreter, as a worker or pod runs it."""
    done = subprocess.run([sys.executable, "-m", "crossdock", "tasks", "run", "masking", "leaks", "r1",
                           "--try-number", "1", "--subdir", str(masking_dag)],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 1
    log = task_log_path(dag_id="masking", task_id="leaks", run_id="r1", try_number=1).read_text()
    assert "password is ***" in log
    assert "uri is postgres://etl:***@db.internal:5432/dw" in log
    assert "WARNING my.task: logged ***" in log
    assert "token ***" in log and "region eu-west-1" in log  # only secret-named Variables are masked
    assert "ValueError: could not log in with ***" in log  # the traceback too
    assert PASSWORD not in log and "Sup3r%40Secret" not in log and "tok-0123456789" not in log
    # The failure reason the executor stores in the database is masked as well.
    assert failure_reason_from_stderr(done.stderr) == "ValueError: could not log in with ***"
    assert PASSWORD not in done.stderr + done.stdout


def test_tasks_test_masks_the_console_output(masking_dag):
    done = subprocess.run([sys.executable, "-m", "crossdock", "tasks", "test", "masking", "leaks",
                           "--subdir", str(masking_dag)], capture_output=True, text=True, timeout=60)
    assert "password is ***" in done.stdout and "logged ***" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr


def test_the_streams_are_wrapped_only_once_a_secret_is_read(masking_dag, tmp_path):
    """A fresh interpreter, as a pod's: a try that has read no secret writes to the plain streams."""
    subprocess.run([sys.executable, "-m", "crossdock", "tasks", "run", "masking", "streams", "r2",
                    "--subdir", str(masking_dag)], check=True, capture_output=True, timeout=60)
    assert (tmp_path / "streams.txt").read_text() == "TextIOWrapper RedactingStream"


def test_the_plain_streams_are_back_after_a_try(masking_dag, tmp_path):
    mask_secret("epsilon-secret-1")  # registered already: this try wraps the streams from its start
    saved = sys.stdout, sys.stderr
    assert run_task_test(["masking", "streams", "--subdir", str(masking_dag)]) == EXIT_SUCCESS  # no log capture
    assert (sys.stdout, sys.stderr) == saved
    assert not isinstance(sys.stdout, RedactingStream)
    assert (tmp_path / "streams.txt").read_text() == "RedactingStream RedactingStream"


# -- tasks render ------------------------------------------------------------------------------
def test_tasks_render_shows_secrets_as_stars(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CROSSDOCK_CONN_RENDER_DB", "postgresql://etl:render-Secret-1@db:5432/dw")
    monkeypatch.setenv("CROSSDOCK_VAR_RENDER_API_KEY", "render-key-123")
    dag_file = tmp_path / "render_dag.py"
    dag_file.write_text(textwrap.dedent("""
        from crossdock import DAG, BashOperator
        from crossdock.secrets.context_accessors import ConnectionAccessor, VariableAccessor

        # The try's context carries var and conn; the DAG names them too so this file
        # renders the same wherever it is loaded.
        with DAG("render_dag", user_defined_macros={"conn": ConnectionAccessor(), "var": VariableAccessor()}):
            BashOperator(task_id="t", bash_command=(
                "psql postgresql://{{ conn.render_db.login }}:{{ conn.render_db.password }}@{{ conn.render_db.host }} "
                "--key {{ var.value.render_api_key }}"))
    """))
    code, out, _ = crossdock(capsys, "tasks", "render", "render_dag", "t", "--subdir", str(dag_file))
    assert code == 0
    assert out.startswith("# bash_command\npsql postgresql://etl:***@db --key ***\n")
    assert "render-Secret-1" not in out and "render-key-123" not in out

