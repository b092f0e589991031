"""Connections: Airflow's URI and JSON forms, the environment and the file, BaseHook, conn and the CLI."""

from __future__ import annotations

import json
import stat

import pytest

from secrets_support import crossdock, no_stray_secret_variables  # noqa: F401
from crossdock import DAG, BaseHook, Connection
from crossdock.configuration import conf
from crossdock.runner.templating import template_environment
from crossdock.secrets.context_accessors import ConnectionAccessor
from crossdock.secrets.errors import ConnectionNotFound, InvalidConnection, SecretsFileError

BRIEF_URI = "postgresql://user:pa%40ss@host:5432/db?sslmode=require"


@pytest.fixture
def connections_file(crossdock_home):
    return crossdock_home / "connections.json"


# -- the URI ------------------------------------------------------------------------------
def test_a_uri_gives_airflows_fields():
    conn = Connection("warehouse", uri=BRIEF_URI)
    assert (conn.conn_id, conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.schema) == (
        "warehouse", "postgres", "host", "user", "pa@ss", 5432, "db")
    assert conn.extra_dejson == {"sslmode": "require"}
    assert Connection(uri="google-cloud-platform://").conn_type == "google_cloud_platform"
    nested = Connection(uri='aws://?__extra__=%7B%22region%22%3A+%22eu%22%2C+%22retries%22%3A+3%7D')
    assert nested.extra_dejson == {"region": "eu", "retries": 3}


@pytest.mark.parametrize("fields", [
    {"conn_type": "postgres", "host": "db.internal", "login": "us er@corp", "password": "p@ss:w/rd#?&%+ é",
     "port": 5432, "schema": "my db/x", "extra": {"sslmode": "require", "a b": "c&d=e"}},
    {"conn_type": "http", "host": "https://api.example.com/v1", "password": "only-a-password"},
    {"conn_type": "aws", "extra": {"region_name": "eu-west-1", "config": {"retries": 3}, "flag": True}},
    {"conn_type": "mysql", "host": "::1", "port": 3306},
    {"conn_type": "redis", "port": 6379},
])
def test_get_uri_round_trips_whatever_the_fields_hold(fields):
    conn = Connection("c", **fields)
    again = Connection("c", uri=conn.get_uri())
    assert again == conn
    assert again.to_dict() == {**fields, **({"extra": fields["extra"]} if "extra" in fields else {})}


def test_the_uri_of_a_connection_is_airflows_spelling():
    conn = Connection("c", conn_type="google_cloud_platform", login="a", password="p@ss", host="h", port=1,
                      schema="s", extra={"k": "v"})
    assert conn.get_uri() == "google-cloud-platform://a:p%40ss@h:1/s?k=v"
    assert Connection("c", conn_type="http", host="h", extra={"k": "v"}).get_uri() == "http://h/?k=v"


@pytest.mark.parametrize("uri, problem", [
    ("user:Hunter2secret@host/db", "it is not a connection URI (expected conn_type://"),
    ("postgres://etl:Hunter2/secret@db:5432/dw", "the port is not a number from 0 to 65535 (percent-encode"),
    ("postgres://etl:Hunter2#secret@db/dw", "it holds a '#'"),
    ("postgres://etl:Hunter2?secret@db/dw", "the port is not a number"),
    ("postgres://etl:Hunter2secret@db:99999/dw", "the port is not a number from 0 to 65535"),
    ("post gres://etl:Hunter2secret@db/dw", "the connection type before '://' must start with a letter"),
    ("http://https://x://etl:Hunter2secret@db", "it holds more than two '://'"),
    ("postgres://etl:Hunter2secret@[::1:5432/dw", "an IPv6 host opened with '[' is not closed"),
    ("postgres://etl:Hunter2secret@db/dw?__extra__=%5B1%5D", "extra must be a JSON object, not list"),
])
def test_a_malformed_uri_names_the_connection_and_the_fault_but_never_the_password(uri, problem):
    with pytest.raises(InvalidConnection) as error:
        Connection("warehouse", uri=uri)
    message = str(error.value)
    assert message.startswith("connection 'warehouse' is malformed: ")
    assert problem in message
    assert "Hunter2" not in message and "secret" not in message


def test_fields_are_checked_when_a_connection_is_built():
    with pytest.raises(InvalidConnection, match="port must be a number from 0 to 65535"):
        Connection("c", conn_type="http", port="eighty")
    with pytest.raises(InvalidConnection, match="extra is not valid JSON"):
        Connection("c", conn_type="http", extra="{oops")
    with pytest.raises(InvalidConnection, match="give either a URI or separate fields"):
        Connection("c", uri="http://h", host="h")
    with pytest.raises(InvalidConnection, match="unknown field\\(s\\) hostname; the fields are conn_type"):
        Connection.from_json('{"conn_type": "http", "hostname": "h"}', conn_id="c")
    with pytest.raises(InvalidConnection, match="it is not valid JSON"):
        Connection.from_json("{nope", conn_id="c")


def test_repr_and_str_never_show_the_password():
    conn = Connection("db", uri="postgres://u:Hunter2secret@h/db")
    assert "Hunter2" not in repr(conn) + str(conn)
    assert repr(conn) == "Connection(conn_id='db', conn_type='postgres', host='h')"


# -- the backends ------------------------------------------------------------------------------
def test_the_environment_holds_a_uri_or_json_and_shadows_the_file(monkeypatch, connections_file):
    connections_file.write_text(json.dumps({"db": "postgres://file@filehost/db",
                                            "api": {"conn_type": "http", "host": "api", "port": "8080",
                                                    "extra": {"timeout": 3}}}))
    assert BaseHook.get_connection("db").host == "filehost"
    api = BaseHook.get_connection("api")
    assert (api.conn_type, api.port, api.extra_dejson) == ("http", 8080, {"timeout": 3})
    monkeypatch.setenv("CROSSDOCK_CONN_DB", BRIEF_URI)
    assert BaseHook.get_connection("db").password == "pa@ss"
    monkeypatch.setenv("CROSSDOCK_CONN_DB", '{"conn_type": "postgres", "host": "jsonhost", "port": 5433}')
    assert (BaseHook.get_connection("db").host, BaseHook.get_connection("db").port) == ("jsonhost", 5433)


def test_a_missing_connection_says_where_it_looked(connections_file):
    with pytest.raises(ConnectionNotFound) as error:
        BaseHook.get_connection("my_db")
    assert str(error.value) == (f"connection 'my_db' is not defined: looked in environment variable "
                                f"CROSSDOCK_CONN_MY_DB and file {connections_file}")


def test_a_malformed_definition_says_where_it_came_from(monkeypatch, connections_file):
    monkeypatch.setenv("CROSSDOCK_CONN_DB", "postgres://u:Hunter2/secret@h:1/db")
    with pytest.raises(InvalidConnection, match=r"^connection 'db' \(environment variable CROSSDOCK_CONN_DB\) "
                                                r"is malformed: the port"):
        BaseHook.get_connection("db")
    connections_file.write_text(json.dumps({"api": ["not", "a", "connection"]}))
    with pytest.raises(InvalidConnection, match=rf"^connection 'api' \(file {connections_file}\) is malformed"):
        BaseHook.get_connection("api")
    connections_file.write_text("{,}")
    with pytest.raises(SecretsFileError, match=f"connections file {connections_file} is not valid JSON"):
        BaseHook.get_connection("api")


def test_a_yaml_connections_file(crossdock_home, monkeypatch):
    path = crossdock_home / "connections.yaml"
    path.write_text("db: postgresql://u:p@h:5432/d\nhttp_api:\n  conn_type: http\n  host: example.com\n")
    monkeypatch.setenv("CROSSDOCK__SECRETS__CONNECTIONS_FILE", str(path))
    conf.reload()
    assert BaseHook.get_connection("db").port == 5432
    assert BaseHook.get_connection("http_api").host == "example.com"


def test_a_hook_subclass_gets_its_connection_as_in_airflow(monkeypatch):
    monkeypatch.setenv("CROSSDOCK_CONN_MY_API", "http://token-user@api.example.com")

    class MyHook(BaseHook):
        def __init__(self, conn_id: str):
            super().__init__()
            self.conn_id = conn_id

        def get_conn(self):
            return self.get_connection(self.conn_id).host

    hook = MyHook("my_api")
    assert hook.get_conn() == "api.example.com"
    assert hook.log.name.endswith("MyHook")
    with pytest.raises(NotImplementedError):
        BaseHook().get_conn()


def test_conn_in_a_sandboxed_template(monkeypatch):
    monkeypatch.setenv("CROSSDOCK_CONN_DB", BRIEF_URI)
    environment = template_environment(DAG("tdag"))
    conn = ConnectionAccessor()
    rendered = environment.from_string(
        "{{ conn.db.host }}:{{ conn.db.port }} {{ conn.db.extra_dejson.sslmode }} {{ conn['db'].login }} "
        "{{ conn.get('nope') }} {{ conn.get('nope', 'dflt') }}").render(conn=conn)
    assert rendered == "host:5432 require user None dflt"
    with pytest.raises(ConnectionNotFound, match="connection 'nope' is not defined"):
        environment.from_string("{{ conn.nope.host }}").render(conn=conn)


# -- the command line ------------------------------------------------------------------------
def test_cli_add_get_list_delete(capsys, connections_file):
    assert crossdock(capsys, "connections", "add", "db", "--conn-uri", BRIEF_URI)[:2] == (
        0, f"Connection 'db' added to file {connections_file}\n")
    assert stat.S_IMODE(connections_file.stat().st_mode) == 0o600
    assert crossdock(capsys, "connections", "add", "api", "--conn-type", "http", "--conn-host", "api.example.com",
                     "--conn-password", "t0ken-value", "--conn-port", "443",
                     "--conn-extra", '{"api_key": "k-123456", "timeout": 3}')[0] == 0
    assert crossdock(capsys, "connections", "add", "js", "--conn-json", '{"conn_type": "aws", "login": "me"}')[0] == 0
    assert BaseHook.get_connection("api").port == 443

    code, out, _ = crossdock(capsys, "connections", "get", "api", "-o", "json")
    shown = json.loads(out)
    assert code == 0 and shown["password"] == "***" and shown["extra"] == {"api_key": "***", "timeout": 3}
    assert "t0ken" not in out and "k-123456" not in out and shown["source"] == "file"
    table = crossdock(capsys, "connections", "get", "db")[1]
    assert "postgres://user:***@host:5432/db?sslmode=require" in table and "pa@ss" not in table
    revealed = json.loads(crossdock(capsys, "connections", "get", "db", "-o", "json", "--show-secrets")[1])
    assert revealed["password"] == "pa@ss" and Connection("db", uri=revealed["uri"]).password == "pa@ss"

    listed = json.loads(crossdock(capsys, "connections", "list", "-o", "json")[1])
    assert [row["conn_id"] for row in listed] == ["api", "db", "js"]
    assert "password" not in listed[0] and "t0ken" not in json.dumps(listed)

    assert crossdock(capsys, "connections", "delete", "db")[0] == 0
    with pytest.raises(ConnectionNotFound):
        BaseHook.get_connection("db")


def test_cli_refuses_bad_input_in_one_line_and_changes_nothing(capsys, monkeypatch, connections_file):
    assert crossdock(capsys, "connections", "add", "db", "--conn-uri", BRIEF_URI)[0] == 0
    before = connections_file.read_text()
    for argv, fragment in [
        (["add", "db", "--conn-uri", BRIEF_URI], "connection 'db' already exists in file"),
        (["add", "x", "--conn-uri", "postgres://u:Hunter2/secret@h/d"], "connection 'x' is malformed: the port"),
        (["add", "x", "--conn-uri", BRIEF_URI, "--conn-host", "h"], "give one of --conn-uri, --conn-json or"),
        (["add", "x", "--conn-host", "h"], "give --conn-uri, --conn-json or --conn-type"),
        (["add", "x", "--conn-type", "http", "--conn-extra", "[1]"], "extra must be a JSON object, not list"),
        (["get", "nope"], "connection 'nope' is not defined: looked in environment variable CROSSDOCK_CONN_NOPE"),
        (["delete", "nope"], f"connection 'nope' does not exist in file {connections_file}"),
    ]:
        code, out, err = crossdock(capsys, "connections", *argv)
        assert code == 1 and out == "" and err.startswith("crossdock: error: ") and fragment in err, err
        assert err.count("\n") == 1 and "Hunter2" not in err
    monkeypatch.setenv("CROSSDOCK_CONN_ENV_ONLY", "http://h")
    code, _, err = crossdock(capsys, "connections", "delete", "env_only")
    assert code == 1 and "set by environment variable CROSSDOCK_CONN_ENV_ONLY" in err
    assert connections_file.read_text() == before
