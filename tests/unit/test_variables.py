"""Variables: the environment, then the variables file; written atomically; read in templates and tries."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from secrets_support import crossdock, no_stray_secret_variables  # noqa: F401
from crossdock import DAG, Variable
from crossdock.config_secrets import scrub_try_environment
from crossdock.configuration import conf
from crossdock.runner.templating import template_environment
from crossdock.secrets.context_accessors import VariableAccessor
from crossdock.secrets.errors import SecretsError, SecretsFileError, VariableNotFound


@pytest.fixture
def variables_file(crossdock_home):
    return crossdock_home / "variables.json"


def stored(path) -> dict:
    return json.loads(path.read_text())


# -- get / set / delete -------------------------------------------------------------------
def test_set_get_delete_round_trip_through_an_owner_only_file(variables_file):
    Variable.set("greeting", "hello")
    Variable.set("count", 3)
    assert Variable.get("greeting") == "hello"
    assert Variable.get("count") == "3"  # a Variable is text, as in Airflow
    assert stored(variables_file) == {"greeting": "hello", "count": "3"}
    assert stat.S_IMODE(variables_file.stat().st_mode) == 0o600
    assert Variable.delete("greeting") == 1
    assert Variable.delete("greeting") == 0
    assert Variable.get("greeting", default_var=None) is None
    assert stored(variables_file) == {"count": "3"}


def test_json_values_round_trip_and_stored_non_strings_read_as_json(variables_file):
    Variable.set("cfg", {"tables": ["a", "b"], "n": 2}, serialize_json=True)
    assert Variable.get("cfg", deserialize_json=True) == {"tables": ["a", "b"], "n": 2}
    variables_file.write_text('{"written_by_hand": {"a": 1}, "flag": true}')
    assert Variable.get("written_by_hand", deserialize_json=True) == {"a": 1}
    assert Variable.get("written_by_hand") == '{"a": 1}'
    assert Variable.get("flag") == "true"


def test_a_missing_variable_is_a_key_error_naming_the_key_and_where_it_looked(variables_file):
    with pytest.raises(KeyError) as error:
        Variable.get("my_key")
    assert isinstance(error.value, VariableNotFound)
    assert str(error.value) == (f"Variable 'my_key' does not exist: looked in environment variable "
                                f"CROSSDOCK_VAR_MY_KEY and file {variables_file}")
    assert Variable.get("my_key", default_var="fallback") == "fallback"
    assert Variable.get("my_key", default_var={"not": "parsed"}, deserialize_json=True) == {"not": "parsed"}


def test_a_value_that_is_not_json_fails_naming_the_key_and_its_source(monkeypatch):
    monkeypatch.setenv("CROSSDOCK_VAR_CFG", "{not json")
    with pytest.raises(SecretsError, match=r"^Variable 'cfg' \(from environment variable CROSSDOCK_VAR_CFG\) "
                                           r"is not valid JSON: "):
        Variable.get("cfg", deserialize_json=True)


# -- the environment ----------------------------------------------------------------------
def test_the_environment_is_read_upper_cased_and_shadows_the_file(monkeypatch, caplog, variables_file):
    Variable.set("my_key", "from-file")
    monkeypatch.setenv("CROSSDOCK_VAR_MY_KEY", "from-env")
    assert Variable.get("my_key") == "from-env"
    Variable.set("my_key", "changed")  # written, with a warning that reads still get the environment's
    assert stored(variables_file)["my_key"] == "changed"
    assert Variable.get("my_key") == "from-env"
    assert any("CROSSDOCK_VAR_MY_KEY, which takes precedence" in r.getMessage() for r in caplog.records)
    monkeypatch.delenv("CROSSDOCK_VAR_MY_KEY")
    assert Variable.get("my_key") == "changed"


def test_a_variable_only_the_environment_defines_cannot_be_deleted(monkeypatch):
    monkeypatch.setenv("CROSSDOCK_VAR_ONLY_ENV", "x")
    with pytest.raises(SecretsError, match="set by environment variable CROSSDOCK_VAR_ONLY_ENV, which crossdock "
                                           "does not change"):
        Variable.delete("only_env")
    assert Variable.get("only_env") == "x"


def test_a_try_keeps_the_variables_and_connections_meant_for_it():
    environ = {"CROSSDOCK_VAR_API_TOKEN": "t0ken-value", "CROSSDOCK_CONN_DB": "postgresql://u:pw@h/db",
               "CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u:pw@h/meta"}
    assert scrub_try_environment(environ) == ["CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN"]
    assert set(environ) == {"CROSSDOCK_VAR_API_TOKEN", "CROSSDOCK_CONN_DB"}


# -- the file -----------------------------------------------------------------------------
def test_a_yaml_variables_file_is_read_and_written_as_yaml(crossdock_home, monkeypatch):
    import yaml

    path = crossdock_home / "secrets" / "variables.yaml"
    monkeypatch.setenv("CROSSDOCK__SECRETS__VARIABLES_FILE", str(path))
    conf.reload()
    Variable.set("region", "eu-west-1")
    assert yaml.safe_load(path.read_text()) == {"region": "eu-west-1"}
    path.write_text("region: us-east-1\nlimits:\n  cpu: 2\n")
    assert Variable.get("region") == "us-east-1"
    assert Variable.get("limits", deserialize_json=True) == {"cpu": 2}


def test_a_broken_file_fails_in_one_line_naming_the_file_but_not_its_contents(variables_file):
    variables_file.write_text('{"db_password": "hunter22-secret",\n  oops}')
    with pytest.raises(SecretsFileError) as error:
        Variable.get("db_password")
    message = str(error.value)
    assert message.startswith(f"variables file {variables_file} is not valid JSON: ")
    assert "line 2" in message and "hunter22" not in message and "\n" not in message
    variables_file.write_text('["a", "list"]')
    with pytest.raises(SecretsFileError, match="must hold one object mapping names to values, not a list"):
        Variable.get("x")


def test_concurrent_writers_lose_no_update(variables_file):
    def writer(n: int) -> None:
        for i in range(5):
            Variable.set(f"k{n}_{i}", str(i))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stored(variables_file)) == 40
    assert not [name for name in os.listdir(variables_file.parent) if name.endswith(".tmp")]


def test_an_empty_setting_means_no_file_and_writes_say_so(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__SECRETS__VARIABLES_FILE", "")
    conf.reload()
    assert Variable.get("x", default_var="d") == "d"
    with pytest.raises(SecretsError, match=r"\[secrets\] variables_file is empty"):
        Variable.set("x", "1")


# -- templates and callables ----------------------------------------------------------------
def render(template: str, **context) -> str:
    return template_environment(DAG("tdag")).from_string(template).render(**context)


def test_var_in_a_sandboxed_template(monkeypatch):
    monkeypatch.setenv("CROSSDOCK_VAR_X", "hello")
    monkeypatch.setenv("CROSSDOCK_VAR_CFG", '{"a": {"b": 3}}')
    monkeypatch.setenv("CROSSDOCK_VAR_MY-KEY", "dashed")
    var = VariableAccessor()
    assert render("{{ var.value.x }} {{ var.json.cfg.a.b }} {{ var.value['my-key'] }}", var=var) == "hello 3 dashed"
    assert render("{{ var.value.get('nope', 'dflt') }} {{ var.json.get('nope', 7) }}", var=var) == "dflt 7"
    assert render("{{ var.json.get('cfg')['a'] }}", var=var) == "{'b': 3}"
    with pytest.raises(VariableNotFound, match="Variable 'nope' does not exist"):
        render("{{ var.value.nope }}", var=var)
    with pytest.raises(VariableNotFound):
        render("{{ var.value.get('nope') }}", var=var)


def test_the_accessor_reads_nothing_until_used(variables_file):
    variables_file.write_text("{broken")
    var = VariableAccessor()  # what every try's context builds: no file is read
    assert repr(var) == "var" and not hasattr(var.value, "__html__")
    with pytest.raises(SecretsFileError):
        var.value.anything


def test_a_try_reads_a_variable_from_its_environment_and_the_file(tmp_path, crossdock_home, monkeypatch):
    from crossdock.runner.task_runner import run_task

    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(tmp_path))
    monkeypatch.setenv("CROSSDOCK_VAR_FROM_ENV", "env-value")
    conf.reload()
    Variable.set("from_file", "file-value")
    out = tmp_path / "out.txt"
    dag_file = tmp_path / "reads_variables.py"
    dag_file.write_text(textwrap.dedent(f"""
        from crossdock import DAG, PythonOperator, Variable

        def read_both():
            with open({str(out)!r}, "w") as handle:
                handle.write(Variable.get("from_env") + " " + Variable.get("from_file"))

        with DAG("reads_variables") as dag:
            PythonOperator(task_id="t", python_callable=read_both)
    """))
    assert run_task(["reads_variables", "t", "r1", "--subdir", str(dag_file)]) == 0
    assert out.read_text() == "env-value file-value"


# -- the command line ------------------------------------------------------------------------
def test_cli_set_get_list_delete(capsys, monkeypatch, variables_file):
    assert crossdock(capsys, "variables", "set", "plain", "hello")[:2] == (
        0, f"Variable 'plain' set in file {variables_file}\n")
    assert crossdock(capsys, "variables", "set", "cfg", '{"a": [1, 2]}', "-j")[0] == 0
    assert crossdock(capsys, "variables", "set", "api_token", "t0ken-abcdef")[0] == 0
    assert crossdock(capsys, "variables", "get", "plain")[1] == "hello\n"
    assert json.loads(crossdock(capsys, "variables", "get", "cfg", "-j")[1]) == {"a": [1, 2]}
    assert crossdock(capsys, "variables", "get", "nope", "--default", "d")[1] == "d\n"
    monkeypatch.setenv("CROSSDOCK_VAR_PLAIN", "from-env")
    monkeypatch.setenv("CROSSDOCK_VAR_ONLY_ENV", "e")
    code, out, _ = crossdock(capsys, "variables", "list", "-o", "json")
    assert code == 0 and json.loads(out) == [
        {"key": "api_token", "value": "***", "source": "file"},
        {"key": "cfg", "value": '{\n  "a": [\n    1,\n    2\n  ]\n}', "source": "file"},
        {"key": "only_env", "value": "e", "source": "environment"},
        {"key": "plain", "value": "from-env", "source": "environment (shadows file)"},
    ]
    table = crossdock(capsys, "variables", "list")[1]
    assert '{"a": [1, 2]}' in table and "t0ken" not in table
    assert "t0ken-abcdef" in crossdock(capsys, "variables", "list", "--show-secrets")[1]
    assert crossdock(capsys, "variables", "delete", "cfg")[0] == 0
    assert "cfg" not in stored(variables_file)


def test_cli_errors_are_one_line(capsys, variables_file):
    code, out, err = crossdock(capsys, "variables", "get", "nope")
    assert (code, out) == (1, "")
    assert err == (f"crossdock: error: Variable 'nope' does not exist: looked in environment variable "
                   f"CROSSDOCK_VAR_NOPE and file {variables_file}\n")
    code, _, err = crossdock(capsys, "variables", "set", "cfg", "{bad", "-j")
    assert code == 1 and err.startswith("crossdock: error: the value is not valid JSON: ")
    code, _, err = crossdock(capsys, "variables", "delete", "nope")
    assert code == 1 and err == f"crossdock: error: Variable 'nope' does not exist in file {variables_file}\n"
    assert not variables_file.exists()  # nothing was written by the failed commands


def test_cli_import_and_export_round_trip(capsys, tmp_path, variables_file):
    source = tmp_path / "in.json"
    source.write_text(json.dumps({"a": "text", "b": {"nested": True}, "c": 5}))
    assert crossdock(capsys, "variables", "import", str(source))[:2] == (
        0, f"3 Variable(s) imported into file {variables_file}\n")
    assert Variable.get("b", deserialize_json=True) == {"nested": True}
    assert Variable.get("c") == "5"
    exported = tmp_path / "out.json"
    assert crossdock(capsys, "variables", "export", str(exported))[0] == 0
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    variables_file.unlink()
    assert crossdock(capsys, "variables", "import", str(exported))[0] == 0
    assert {key: Variable.get(key) for key in "abc"} == {"a": "text", "b": '{\n  "nested": true\n}', "c": "5"}
    code, _, err = crossdock(capsys, "variables", "import", str(tmp_path / "missing.json"))
    assert code == 1 and "no file" in err


def test_importing_crossdock_and_naming_variable_stays_cheap():
    probe = ("import sys, crossdock; crossdock.Variable; crossdock.Connection; crossdock.BaseHook; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'jinja2', 'yaml', 'celery') "
             "or m.startswith('crossdock.dag') or m == 'crossdock.database'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
