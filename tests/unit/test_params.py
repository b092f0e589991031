"""Params: JSON Schema rules, required values, the merge a try sees, and what parsing refuses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest

from crossdock import DAG, BashOperator, Param
from crossdock.dag import DagDefinitionError
from crossdock.dag.param import (
    NOTSET,
    ParamsDict,
    ParamValidationError,
    resolve_params,
    validate_run_conf,
)
from crossdock.dag.processor import parse_payload
from crossdock.dag.serialization import SerializedDAG, dag_hash, serialize_dag
from crossdock.exceptions import UserFacingError

# (schema keywords, a value they accept, one they refuse, what the refusal says)
KEYWORDS = [
    ({"type": "integer"}, 5, "5", "'5' is not of type 'integer'"),
    ({"type": "number"}, 2.5, True, "True is not of type 'number'"),
    ({"type": "boolean"}, False, "yes", "'yes' is not of type 'boolean'"),
    ({"type": ["null", "integer"]}, None, "x", "'x' is not of type 'null', 'integer'"),
    ({"enum": ["a", "b"]}, "b", "c", "'c' is not one of ['a', 'b']"),
    ({"const": 3}, 3, 4, "3 was expected"),
    ({"minimum": 0}, 0, -1, "-1 is less than the minimum of 0"),
    ({"maximum": 20}, 20, 25, "25 is greater than the maximum of 20"),
    ({"exclusiveMinimum": 0}, 1, 0, "0 is less than or equal to the minimum of 0"),
    ({"exclusiveMaximum": 10}, 9, 10, "10 is greater than or equal to the maximum of 10"),
    ({"multipleOf": 5}, 10, 7, "7 is not a multiple of 5"),
    ({"minLength": 2}, "ab", "a", "'a' is too short"),
    ({"maxLength": 3}, "abc", "abcd", "'abcd' is too long"),
    ({"pattern": "^[a-z]+$"}, "abc", "ABC", "'ABC' does not match '^[a-z]+$'"),
    ({"format": "date"}, "2024-02-29", "2024-02-31", "'2024-02-31' is not a 'date'"),
    ({"format": "date-time"}, "2024-01-01T10:00:00+00:00", "2024-01-01 10:00", "is not a 'date-time'"),
    ({"format": "time"}, "12:13:14", "25:00:00", "'25:00:00' is not a 'time'"),  # Airflow's HH:MM:SS
    ({"format": "email"}, "ops@example.com", "nope", "'nope' is not a 'email'"),
    ({"type": "array", "items": {"type": "string"}}, ["a"], ["a", 1], "1 is not of type 'string' (at [1])"),
    ({"minItems": 1}, [1], [], "[] should be non-empty"),
    ({"maxItems": 1}, [1], [1, 2], "[1, 2] is too long"),
    ({"uniqueItems": True}, [1, 2], [1, 1], "[1, 1] has non-unique elements"),
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"a": 1}, {},
     "'a' is a required property"),
    ({"type": "object", "properties": {"a": {"type": "integer"}}}, {"a": 1}, {"a": "x"},
     "'x' is not of type 'integer' (at ['a'])"),
]


@pytest.mark.parametrize("schema, good, bad, message", KEYWORDS, ids=[", ".join(k[0]) for k in KEYWORDS])
def test_each_json_schema_keyword_accepts_and_refuses(schema, good, bad, message):
    param = Param(**schema)
    assert param.resolve(good) == good
    with pytest.raises(ParamValidationError) as refused:
        param.resolve(bad)
    assert message in str(refused.value)
    assert isinstance(refused.value, UserFacingError)


def test_a_param_names_itself_and_the_rule_in_a_params_dict():
    params = ParamsDict({"number_param": Param(25, type="integer", minimum=0, maximum=20)})
    with pytest.raises(ParamValidationError) as refused:
        params.validate()
    assert str(refused.value) == "param 'number_param': 25 is greater than the maximum of 20"
    assert refused.value.param == "number_param"
    assert refused.value.problem == "25 is greater than the maximum of 20"


def test_title_and_description_describe_without_restricting():
    param = Param("x", description="who to greet", title="Who")
    assert param.resolve() == "x" and param.resolve(42) == 42
    assert param.description == "who to greet" and param.schema == {"title": "Who"}


def test_a_schema_dict_may_be_given_whole():
    assert Param(3, schema={"type": "integer"}).schema == {"type": "integer"}


def test_a_param_without_default_is_required_and_none_is_a_real_default():
    required = Param(type="integer")
    assert required.value is NOTSET and not required.has_value
    with pytest.raises(ParamValidationError, match="required, but no value was given and it has no default"):
        required.resolve()
    assert required.resolve(7) == 7
    assert required.resolve(suppress_exception=True) is None
    nullable = Param(None, type=["null", "integer"])
    assert nullable.resolve() is None
    assert "default" not in required.serialize() and nullable.serialize()["default"] is None


def test_a_schema_that_is_not_json_schema_is_refused_naming_the_keyword():
    with pytest.raises(ParamValidationError, match="its schema is not valid JSON Schema: 'integr'"):
        Param(1, type="integr").resolve()


def test_resolving_a_value_leaves_the_param_unchanged():
    param = Param(5, type="integer")
    assert param.resolve(9) == 9
    assert param.value == 5


def test_a_plain_value_set_over_a_param_keeps_its_schema_and_a_param_replaces_it():
    params = ParamsDict({"n": Param(5, type="integer", maximum=10), "who": "world"})
    params["n"] = 8
    assert params["n"] == 8 and params.get_param("n").schema == {"type": "integer", "maximum": 10}
    with pytest.raises(ParamValidationError, match="param 'n': 11 is greater than the maximum of 10"):
        params["n"] = 11
    params["n"] = Param("text")
    assert params["n"] == "text"
    params["who"] = 3  # a plain value has no schema to break
    assert params.validate() == {"n": "text", "who": 3}


def test_dump_gives_values_and_none_where_validation_fails():
    params = ParamsDict({"ok": 1, "bad": Param(50, maximum=10), "missing": Param(type="string")})
    assert params.dump() == {"ok": 1, "bad": None, "missing": None}
    assert dict(params.items())["bad"] == Param(50, maximum=10)
    assert params == {"ok": 1, "bad": None, "missing": None}


# -- the try's view -------------------------------------------------------------------
def _dag_and_task(dag_params, task_params=None, **dag_kwargs):
    with DAG("params_dag", params=dag_params, **dag_kwargs) as dag:
        task = BashOperator(task_id="t", bash_command="true", params=task_params)
    return dag, task


def test_resolve_params_merges_dag_then_task_then_every_conf_key():
    dag, task = _dag_and_task({"n": Param(10, type="integer", maximum=20), "who": "world", "level": "dag"},
                              {"level": "task", "only_task": True})
    assert resolve_params(dag, task, None) == {"n": 10, "who": "world", "level": "task", "only_task": True}
    merged = resolve_params(dag, task, {"n": 7, "level": "conf", "undeclared": [1]})
    assert merged == {"n": 7, "who": "world", "level": "conf", "only_task": True, "undeclared": [1]}


def test_resolve_params_ignores_the_conf_when_overrides_are_off():
    dag, task = _dag_and_task({"n": Param(10, type="integer", maximum=20)})
    assert resolve_params(dag, task, {"n": 99, "extra": 1}, conf_overrides=False) == {"n": 10}
    with pytest.raises(ParamValidationError, match="a run's conf must be a JSON object, not list"):
        resolve_params(dag, task, ["n"])


def test_resolve_params_checks_conf_and_task_values_against_the_dags_schema():
    dag, task = _dag_and_task({"n": Param(10, type="integer", maximum=20)})
    with pytest.raises(ParamValidationError, match="param 'n': 25 is greater than the maximum of 20"):
        resolve_params(dag, task, {"n": 25})
    dag, task = _dag_and_task({"n": Param(10, type="integer")}, {"n": "ten"})
    with pytest.raises(ParamValidationError, match="param 'n': 'ten' is not of type 'integer'"):
        resolve_params(dag, task, None)
    dag, task = _dag_and_task({"who": Param(type="string")})
    with pytest.raises(ParamValidationError, match="param 'who': required"):
        resolve_params(dag, task, {})
    assert resolve_params(dag, task, {"who": "me"}) == {"who": "me"}


def test_resolve_params_leaves_the_dags_params_as_declared():
    dag, task = _dag_and_task({"n": Param(10, type="integer")})
    resolve_params(dag, task, {"n": 3})
    assert dag.params["n"] == 10


def test_default_args_params_are_merged_over_the_dags():
    dag = DAG("d", params={"a": 1, "b": 2}, default_args={"params": {"b": 3}, "retries": 1})
    assert dag.params.validate() == {"a": 1, "b": 3}
    assert "params" not in dag.default_args


def test_dag_params_must_be_a_mapping():
    with pytest.raises(DagDefinitionError, match="DAG 'd': params must be a dict, not list"):
        DAG("d", params=["a"])


def test_params_without_schemas_never_import_jsonschema():
    code = textwrap.dedent("""
        import sys
        from crossdock import DAG, BashOperator, Param
        from crossdock.dag.param import resolve_params
        with DAG("plain", params={"who": "world", "n": Param(3)}) as dag:
            task = BashOperator(task_id="t", bash_command="true", params={"extra": 1})
        print(resolve_params(dag, task, {"who": "you"}), "jsonschema" in sys.modules)
        dag.params["n"] = Param(3, type="integer")
        resolve_params(dag, task, None)
        print("jsonschema" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["{'who': 'you', 'n': 3, 'extra': 1} False", "True"]


# -- trigger time, from the stored form ------------------------------------------------
SCHEMA = {"number_param": {"default": 10, "schema": {"type": "integer", "minimum": 0, "maximum": 20}},
          "who": {"default": "world"},
          "mode": {"description": "how", "schema": {"enum": ["fast", "slow"]}}}


def test_validate_run_conf_returns_the_params_the_run_will_have():
    assert validate_run_conf(SCHEMA, {"mode": "fast", "number_param": 7, "extra": True}) == {
        "number_param": 7, "who": "world", "mode": "fast", "extra": True}


@pytest.mark.parametrize("conf, message", [
    ({"mode": "fast", "number_param": 25}, "param 'number_param': 25 is greater than the maximum of 20"),
    ({"mode": "medium"}, "param 'mode': 'medium' is not one of ['fast', 'slow']"),
    ({}, "param 'mode': required, but no value was given and it has no default"),
    (["mode"], "a run's conf must be a JSON object, not list ['mode']"),
])
def test_validate_run_conf_refuses_conf_breaking_a_param(conf, message):
    with pytest.raises(ParamValidationError) as refused:
        validate_run_conf(SCHEMA, conf)
    assert str(refused.value) == message


def test_validate_run_conf_without_params_accepts_any_object():
    assert validate_run_conf(None, None) == {}
    assert validate_run_conf({}, {"anything": [1, 2]}) == {"anything": [1, 2]}


# -- serialization ---------------------------------------------------------------------
def test_params_travel_in_the_serialized_dag_and_validate_from_it():
    dag, _ = _dag_and_task({"number_param": Param(10, type="integer", minimum=0, maximum=20),
                            "who": "world", "mode": Param(description="how", enum=["fast", "slow"]),
                            "since": datetime(2024, 1, 2, tzinfo=timezone.utc)})
    data = json.loads(json.dumps(serialize_dag(dag)))
    assert data["params"] == {**SCHEMA, "since": {"default": "2024-01-02T00:00:00+00:00"}}
    stored = SerializedDAG.from_dict(data)
    with pytest.raises(ParamValidationError, match="param 'number_param': 25"):
        validate_run_conf(stored.params, {"mode": "slow", "number_param": 25})


def test_a_dag_without_params_serializes_as_before_and_an_old_one_still_loads():
    dag, _ = _dag_and_task(None)
    data = serialize_dag(dag)
    assert "params" not in data  # so its hash (and stored row) did not change
    old = {key: value for key, value in data.items() if key != "params"}
    assert SerializedDAG.from_dict(old).params == {} and dag_hash(old) == dag_hash(data)
    assert validate_run_conf(SerializedDAG.from_dict(old).params, {"x": 1}) == {"x": 1}


def test_a_param_default_json_cannot_hold_is_an_error_naming_the_param():
    dag, _ = _dag_and_task({"odd": object()})
    with pytest.raises(DagDefinitionError, match="DAG 'params_dag': param 'odd' holds object"):
        serialize_dag(dag)


# -- parse time: import errors ---------------------------------------------------------
def _parse(tmp_path, body: str) -> dict:
    path = tmp_path / "params_file.py"
    path.write_text("from crossdock import DAG, BashOperator, Param\n" + textwrap.dedent(body))
    return parse_payload(str(path))


def test_a_scheduled_dag_with_an_invalid_default_is_an_import_error_naming_the_param(tmp_path):
    result = _parse(tmp_path, """
        import datetime
        with DAG("sched", schedule="@daily", start_date=datetime.datetime(2024, 1, 1),
                 params={"number_param": Param(25, type="integer", maximum=20)}) as dag:
            BashOperator(task_id="t", bash_command="true")
    """)
    assert result["dags"] == []
    assert result["error"].startswith(
        "DagDefinitionError: DAG 'sched': param 'number_param': 25 is greater than the maximum of 20; "
        "a DAG with a schedule needs a valid default for every param")


def test_a_scheduled_dag_with_valid_defaults_parses(tmp_path):
    result = _parse(tmp_path, """
        import datetime
        with DAG("sched", schedule="@daily", start_date=datetime.datetime(2024, 1, 1),
                 params={"n": Param(5, type="integer", maximum=20), "who": "world"}) as dag:
            BashOperator(task_id="t", bash_command="true", params={"n": 6})
    """)
    assert result["error"] is None and result["dags"][0]["params"]["n"] == {
        "default": 5, "schema": {"type": "integer", "maximum": 20}}


def test_a_scheduled_dag_with_a_required_param_is_an_import_error(tmp_path):
    result = _parse(tmp_path, """
        import datetime
        with DAG("sched", schedule="@daily", start_date=datetime.datetime(2024, 1, 1),
                 params={"who": Param(type="string")}) as dag:
            BashOperator(task_id="t", bash_command="true")
    """)
    assert "param 'who': required" in result["error"] and "schedule" in result["error"]


def test_an_unscheduled_dag_may_leave_params_required_or_invalid_until_triggered(tmp_path):
    result = _parse(tmp_path, """
        with DAG("manual", params={"who": Param(type="string"), "n": Param(25, maximum=20)}) as dag:
            BashOperator(task_id="t", bash_command="true")
    """)
    assert result["error"] is None
    assert result["dags"][0]["params"] == {"who": {"schema": {"type": "string"}},
                                           "n": {"default": 25, "schema": {"maximum": 20}}}


def test_a_broken_schema_is_an_import_error_on_any_dag(tmp_path):
    result = _parse(tmp_path, """
        with DAG("manual", params={"n": Param(1, type="integr")}) as dag:
            BashOperator(task_id="t", bash_command="true")
    """)
    assert result["error"].startswith("DagDefinitionError: DAG 'manual': param 'n': its schema is not "
                                      "valid JSON Schema")


def test_a_tasks_value_breaking_the_dags_param_is_an_import_error_naming_the_task(tmp_path):
    result = _parse(tmp_path, """
        with DAG("manual", params={"n": Param(1, type="integer")}) as dag:
            BashOperator(task_id="t", bash_command="true", params={"n": "one"})
    """)
    assert result["error"] == ("DagDefinitionError: DAG 'manual', task 't': param 'n': "
                               "'one' is not of type 'integer'")


def test_the_import_error_is_recorded_and_other_dags_of_the_folder_still_load(dags_folder):
    from sqlalchemy import select

    from crossdock import database
    from crossdock.dag.dag_store import store_parse_result
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.models import DagImportError, SerializedDagModel

    (dags_folder / "bad.py").write_text(textwrap.dedent("""
        import datetime
        from crossdock import DAG, BashOperator, Param
        with DAG("bad", schedule="@daily", start_date=datetime.datetime(2024, 1, 1),
                 params={"n": Param(-1, type="integer", minimum=0)}) as dag:
            BashOperator(task_id="t", bash_command="true")
    """))
    (dags_folder / "good.py").write_text(
        "from crossdock import DAG, BashOperator, Param\n"
        "with DAG('good', params={'n': Param(1, minimum=0)}) as dag:\n"
        "    BashOperator(task_id='t', bash_command='true')\n")
    database.migrate()
    store_parse_result(parse_dag_folder(str(dags_folder)))
    with database.create_session() as session:
        errors = {row.filename: row.stacktrace for row in session.scalars(select(DagImportError))}
        stored = {row.dag_id: row.data for row in session.scalars(select(SerializedDagModel))}
    assert list(stored) == ["good"] and stored["good"]["params"] == {"n": {"default": 1, "schema": {"minimum": 0}}}
    assert list(errors) == [str(dags_folder / "bad.py")]
    assert "param 'n': -1 is less than the minimum of 0" in errors[str(dags_folder / "bad.py")]


def test_param_is_exported_by_the_package():
    import crossdock
    from crossdock.dag.param import Param as Defined

    assert crossdock.Param is Defined and "Param" in dir(crossdock)
