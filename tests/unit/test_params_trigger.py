"""``crossdock dags trigger -c JSON`` against a DAG's params: a bad conf creates no run.

The CLI is called as ``main([...])`` in this process, on SQLite in the test's own home.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from sqlalchemy import select, update

from crossdock import database
from crossdock.cli.main import main
from crossdock.models import DagRun, SerializedDagModel

PARAMS_DAG = """
    from crossdock import DAG, BashOperator, Param

    with DAG("params_dag", params={
            "number_param": Param(10, type="integer", minimum=0, maximum=20),
            "who": "world",
            "mode": Param(description="how to run", enum=["fast", "slow"]),
    }) as dag:
        BashOperator(task_id="t", bash_command="echo {{ params.who }}")
"""


@pytest.fixture
def params_dag(dags_folder):
    path = dags_folder / "params_dag.py"
    path.write_text(textwrap.dedent(PARAMS_DAG))
    database.migrate()
    return path


def trigger(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["dags", "trigger", "params_dag", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def stored_runs() -> list[tuple[str, dict]]:
    with database.create_session() as session:
        return [(run.run_id, run.conf) for run in session.scalars(select(DagRun).order_by(DagRun.id))]


@pytest.mark.parametrize("conf, error", [
    ({"mode": "fast", "number_param": 25}, "param 'number_param': 25 is greater than the maximum of 20"),
    ({"mode": "fast", "number_param": "7"}, "param 'number_param': '7' is not of type 'integer'"),
    ({"mode": "medium"}, "param 'mode': 'medium' is not one of ['fast', 'slow']"),
    ({"number_param": 7}, "param 'mode': required, but no value was given and it has no default"),
    (None, "param 'mode': required, but no value was given and it has no default"),
])
def test_conf_breaking_a_param_fails_in_one_line_and_creates_no_run(params_dag, capsys, conf, error):
    args = ["-c", json.dumps(conf)] if conf is not None else []
    code, out, err = trigger(capsys, *args)
    assert code == 1 and out == ""
    assert err.splitlines() == [f"crossdock: error: no run of DAG 'params_dag' was created: {error}"]
    assert stored_runs() == []


def test_good_conf_is_stored_on_the_run_as_given(params_dag, capsys):
    conf = {"mode": "slow", "number_param": 7, "undeclared": {"any": ["thing"]}}
    code, out, _ = trigger(capsys, "-c", json.dumps(conf), "--run-id", "r1")
    assert code == 0 and "queued run 'r1'" in out
    assert stored_runs() == [("r1", conf)]


def test_conf_that_is_not_a_json_object_is_refused(params_dag, capsys):
    code, _, err = trigger(capsys, "-c", '["mode", "fast"]')
    assert code == 1 and err.splitlines() == ["crossdock: error: --conf must be a JSON object"]
    code, _, err = trigger(capsys, "-c", "{mode: fast}")
    assert code == 1 and err.startswith("crossdock: error: --conf is not valid JSON")
    assert stored_runs() == []


def test_the_trigger_validates_from_the_stored_dag_without_importing_its_file(params_dag, capsys):
    assert main(["dags", "reserialize"]) == 0
    params_dag.write_text("raise RuntimeError('the trigger imported the DAG file')\n")
    code, _, err = trigger(capsys, "-c", json.dumps({"mode": "fast", "number_param": 99}))
    assert code == 1 and "param 'number_param': 99 is greater than the maximum of 20" in err
    assert trigger(capsys, "-c", json.dumps({"mode": "fast"}), "--run-id", "ok")[0] == 0
    assert stored_runs() == [("ok", {"mode": "fast"})]


def test_a_dag_stored_before_params_were_serialized_accepts_any_conf(params_dag, capsys):
    assert main(["dags", "reserialize"]) == 0
    with database.create_session() as session:
        row = session.get(SerializedDagModel, "params_dag")
        old = {key: value for key, value in row.data.items() if key != "params"}
        session.execute(update(SerializedDagModel).where(SerializedDagModel.dag_id == "params_dag")
                        .values(data=old))
    code, _, err = trigger(capsys, "-c", json.dumps({"number_param": 99}), "--run-id", "old")
    assert (code, err) == (0, "")
    assert stored_runs() == [("old", {"number_param": 99})]
