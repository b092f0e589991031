"""Jinja templating of operator fields: what a try renders, how it fails, and `tasks render`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crossdock import DAG, BashOperator, PythonOperator
from crossdock.configuration import conf
from crossdock.dag.serialization import serialize_dag
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import parse_logical_date
from crossdock.runner.context import RuntimeTaskInstance, build_context
from crossdock.runner.task_log import task_log_path
from crossdock.runner.task_runner import EXIT_SUCCESS, EXIT_TASK_FAILED, failure_reason_from_stderr, run_task
from crossdock.runner.templating import TemplateRenderError, render_template_fields

DATE = "2024-01-02T03:04:05+00:00"


def render(task, logical_date: str = DATE):
    ti = RuntimeTaskInstance(TaskInstanceKey(task.dag_id, task.task_id, "r1", 1, -1),
                             logical_date=parse_logical_date(logical_date))
    render_template_fields(task, build_context(dag=task.dag, task=task, ti=ti))
    return task


def bash(command: str, *, dag: DAG | None = None, **kwargs) -> BashOperator:
    return BashOperator(task_id="t", bash_command=command, dag=dag or DAG("tdag"), **kwargs)


# -- what templates see ----------------------------------------------------------------
def test_date_keys_and_the_task_instance_key_string_are_airflows():
    task = render(bash("echo {{ ds }} {{ ds_nodash }} {{ ts }} {{ ts_nodash }} {{ ts_nodash_with_tz }} "
                       "{{ task_instance_key_str }} {{ run_id }} {{ ti.try_number }}"))
    assert task.bash_command == ("echo 2024-01-02 20240102 2024-01-02T03:04:05+00:00 20240102T030405 "
                                 "20240102T030405+0000 tdag__t__20240102 r1 1")


def test_params_and_macros():
    task = render(bash("echo {{ params.x }} {{ macros.ds_add(ds, 1) }} {{ macros.ds_add(ds, -2) }} "
                       "{{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m/%Y') }} {{ macros.uuid.uuid4() | string | length }}",
                       dag=DAG("tdag", params={"x": "from-params"})))
    assert task.bash_command == "echo from-params 2024-01-03 2023-12-31 02/01/2024 36"


def test_user_defined_macros_and_filters():
    dag = DAG("tdag", user_defined_macros={"who": "world", "double": lambda n: n * 2},
              user_defined_filters={"shout": str.upper})
    assert render(bash("echo {{ who | shout }} {{ double(21) }}", dag=dag)).bash_command == "echo WORLD 42"


def test_native_rendering_gives_python_objects_and_plain_rendering_gives_text():
    def make(native: bool) -> PythonOperator:
        dag = DAG(f"native_{native}", render_template_as_native_obj=native, params={"n": 3})
        return PythonOperator(task_id="p", python_callable=print, dag=dag,
                              op_kwargs={"items": "{{ [1, 2, params.n] }}"})

    assert render(make(True)).op_kwargs == {"items": [1, 2, 3]}
    assert render(make(False)).op_kwargs == {"items": "[1, 2, 3]"}


def test_nested_values_are_rendered_keys_and_other_objects_left_alone():
    marker = object()
    task = PythonOperator(task_id="p", python_callable=print, dag=DAG("tdag"),
                          op_args=[["{{ ds }}", ("{{ ds_nodash }}", 5)], marker],
                          op_kwargs={"{{ ds }}": {"inner": ["{{ run_id }}"], "n": 1}})
    render(task)
    assert task.op_args == [["2024-01-02", ("20240102", 5)], marker] and task.op_args[1] is marker
    assert task.op_kwargs == {"{{ ds }}": {"inner": ["r1"], "n": 1}}


def test_bash_env_values_and_cwd_are_rendered(tmp_path):
    task = render(bash("echo", env={"DAY": "{{ ds }}", "{{ KEY }}": "x"}, cwd=str(tmp_path) + "/{{ ds_nodash }}"))
    assert task.env == {"DAY": "2024-01-02", "{{ KEY }}": "x"}
    assert task.cwd == f"{tmp_path}/20240102"


def test_python_op_kwargs_and_templates_dict_reach_the_callable():
    seen = {}

    def callable_(day, templates_dict):
        seen.update(day=day, templates_dict=templates_dict)

    task = PythonOperator(task_id="p", python_callable=callable_, dag=DAG("tdag"),
                          op_kwargs={"day": "{{ ds }}"}, templates_dict={"key": "{{ task_instance_key_str }}"})
    render(task).execute(build_context(dag=task.dag, task=task, ti=RuntimeTaskInstance(
        TaskInstanceKey("tdag", "p", "r1", 1, -1))))
    assert seen == {"day": "2024-01-02", "templates_dict": {"key": "tdag__p__20240102"}}


# -- template files --------------------------------------------------------------------
def test_a_script_name_is_a_template_file_next_to_the_dag_file_or_on_the_searchpath(tmp_path):
    (tmp_path / "script.sh").write_text("echo from file {{ ds_nodash }}\n")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "other.bash").write_text("echo other {{ ds }}")
    dag = DAG("tdag", template_searchpath="more")
    dag.fileloc = str(tmp_path / "dag_file.py")
    assert render(bash("script.sh", dag=dag)).bash_command == "echo from file 20240102\n"
    assert render(BashOperator(task_id="o", bash_command="other.bash", dag=dag)).bash_command == "echo other 2024-01-02"


def test_a_missing_template_file_fails_naming_it(tmp_path):
    dag = DAG("tdag")
    dag.fileloc = str(tmp_path / "dag_file.py")
    with pytest.raises(TemplateRenderError, match=r"template file 'missing\.sh' not found .*" + str(tmp_path)):
        render(bash("missing.sh", dag=dag))


# -- failures --------------------------------------------------------------------------
def test_an_unknown_name_fails_naming_it_and_the_field():
    with pytest.raises(TemplateRenderError) as caught:
        render(bash("echo {{ no_such_thing }}"))
    assert str(caught.value) == ("cannot render template field 'bash_command' of task 't': "
                                 "'no_such_thing' is undefined")


def test_a_syntax_error_names_the_field_the_line_and_jinjas_message(tmp_path):
    with pytest.raises(TemplateRenderError, match=r"field 'bash_command' of task 't': template syntax error "
                                                  r"at line 1: unexpected '}'"):
        render(bash("echo {{ ds }"))
    (tmp_path / "broken.sh").write_text("echo fine\necho {% if %}\n")
    dag = DAG("tdag")
    dag.fileloc = str(tmp_path / "dag_file.py")
    with pytest.raises(TemplateRenderError, match=r"syntax error at .*broken\.sh, line 2: "):
        render(bash("broken.sh", dag=dag))


def test_nothing_to_render_leaves_fields_untouched_and_serialization_unchanged():
    dag = DAG("tdag", user_defined_macros={"f": len}, template_searchpath=["/x"])
    task = bash("echo {{ ds }}", dag=dag, env={"A": "plain"})
    before = serialize_dag(dag)
    assert "user_defined_macros" not in str(before) and "bash_command" not in str(before)
    env = task.env
    assert render(BashOperator(task_id="plain", bash_command="echo plain", dag=dag)).bash_command == "echo plain"
    assert task.env is env


# -- through the runner ----------------------------------------------------------------
TRY_DAG = """
    from crossdock import DAG, BashOperator

    with DAG("tpl_dag") as dag:
        BashOperator(task_id="echo", bash_command="echo rendered {{ ds }} {{ task_instance_key_str }}")
        BashOperator(task_id="plain", bash_command="echo plain")
        BashOperator(task_id="undefined", bash_command="echo {{ missing_name }}")
"""


@pytest.fixture
def dag_file(tmp_path, crossdock_home, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(tmp_path))
    conf.reload()
    path = tmp_path / "tpl_dag.py"
    path.write_text(textwrap.dedent(TRY_DAG))
    return path


def test_a_try_renders_before_it_executes(dag_file, crossdock_home):
    assert run_task(["tpl_dag", "echo", "r1", "--subdir", str(dag_file), "--logical-date", DATE]) == EXIT_SUCCESS
    log = task_log_path(dag_id="tpl_dag", task_id="echo", run_id="r1", try_number=1,
                        base_log_folder=crossdock_home / "logs").read_text()
    assert "rendered 2024-01-02 tpl_dag__echo__20240102\n" in log


def test_a_try_with_an_unknown_name_fails_with_a_one_line_reason(dag_file, capfd):
    assert run_task(["tpl_dag", "undefined", "r1", "--subdir", str(dag_file), "--logical-date", DATE]) \
        == EXIT_TASK_FAILED
    assert failure_reason_from_stderr(capfd.readouterr().err) == (
        "cannot render template field 'bash_command' of task 'undefined': 'missing_name' is undefined")


def test_jinja_is_imported_only_by_a_try_that_has_templates(dag_file, crossdock_home):
    script = textwrap.dedent(f"""
        import sys
        from crossdock.runner.task_runner import run_task
        argv = ["r1", "--subdir", {str(dag_file)!r}, "--logical-date", {DATE!r}]
        plain = run_task(["tpl_dag", "plain", *argv])
        print("PLAIN", plain, "jinja2" in sys.modules)
        templated = run_task(["tpl_dag", "echo", *argv])
        print("TEMPLATED", templated, "jinja2" in sys.modules)
    """)
    env = dict(os.environ, CROSSDOCK_HOME=str(crossdock_home))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert "PLAIN 0 False" in done.stdout and "TEMPLATED 0 True" in done.stdout, done.stdout + done.stderr


def test_tasks_render_prints_each_field_and_fails_in_one_line(dag_file, capsys):
    from crossdock.cli.main import main

    assert main(["tasks", "render", "tpl_dag", "echo", "--subdir", str(dag_file), "--logical-date", DATE]) == 0
    assert capsys.readouterr().out == ("# bash_command\necho rendered 2024-01-02 tpl_dag__echo__20240102\n"
                                       "# env\nNone\n# cwd\nNone\n")
    assert main(["tasks", "render", "tpl_dag", "undefined", "--subdir", str(dag_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("crossdock: error: cannot render template field 'bash_command' of task 'undefined': "
                   "'missing_name' is undefined")


# -- syntax checked when the DAG file is parsed ---------------------------------------------
def test_a_template_syntax_error_is_an_import_error_naming_the_task_field_and_line(tmp_path):
    from crossdock.dag.processor import parse_payload

    (tmp_path / "broken.sh").write_text("echo ok\necho {{ ds }\n")
    path = tmp_path / "templated.py"
    dag_file = textwrap.dedent('''
        from crossdock import DAG, BashOperator

        with DAG("templated") as dag:
            BashOperator(task_id="fine", bash_command="echo {{{{ ds }}}} {{% if true %}}x{{% endif %}}")
            BashOperator(task_id="typo", bash_command={command!r})
    ''')
    path.write_text(dag_file.format(command="echo\n{{ ds "))
    payload = parse_payload(str(path))
    assert payload["dags"] == []
    assert ("DAG 'templated', task 'typo': template field 'bash_command' has a syntax error at line 2"
            in payload["error"])
    path.write_text(dag_file.format(command="broken.sh"))
    assert f"has a syntax error at {tmp_path / 'broken.sh'}, line 2" in parse_payload(str(path))["error"]
    path.write_text(dag_file.format(command="echo {{ ds }}"))
    assert parse_payload(str(path))["error"] is None
