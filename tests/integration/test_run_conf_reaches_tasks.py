"""``dags trigger -c`` reaches the tries: ``dag_run.conf``, ``params`` overridden as in
Airflow, and ``run_type``, through the scheduler and the LocalExecutor (no database in the try)."""

from __future__ import annotations

import json
import textwrap
import time

from crossdock.runner.task_log import task_log_path_for_key

from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files

DAG_FILE = '''
import json
from crossdock import DAG, BashOperator, Param, PythonOperator

def show(params, dag_run):
    print("seen:", json.dumps({"params": dict(params), "conf": dag_run.conf, "run_type": dag_run.run_type}))

with DAG("conf_dag", schedule=None, params={"number_param": Param(10, type="integer", maximum=20),
                                            "who": "world"}) as dag:
    PythonOperator(task_id="show", python_callable=show)
    BashOperator(task_id="echo", bash_command="echo {{ params.number_param }} {{ dag_run.conf.get('extra', '-') }}")
'''


def seen(tis) -> dict:
    log = task_log_path_for_key(tis["show"].key).read_text()
    return json.loads(log.split("seen: ", 1)[1].splitlines()[0])


def test_trigger_conf_overrides_params_and_reaches_dag_run_in_every_try(crossdock_home, monkeypatch, capsys):
    from crossdock.cli.main import main
    from crossdock.executors.local_executor import LocalExecutor
    from crossdock.models.base import utcnow  # noqa: F401 - the database layer is loaded for the run

    folder = use_dag_files(crossdock_home, monkeypatch)
    (folder / "conf_dag.py").write_text(textwrap.dedent(DAG_FILE))
    assert main(["dags", "trigger", "conf_dag", "-r", "with_conf", "-c", '{"number_param": 7, "extra": "x"}']) == 0
    assert main(["dags", "trigger", "conf_dag", "-r", "no_conf"]) == 0
    assert main(["dags", "trigger", "conf_dag", "-r", "bad", "-c", '{"number_param": 25}']) == 1
    assert "param 'number_param': 25 is greater than the maximum of 20" in capsys.readouterr().err
    run_scheduler(LocalExecutor(parallelism=2))

    state, tis = run_states("conf_dag", "with_conf")
    assert state == "success", {t: ti.failure_reason for t, ti in tis.items()}
    assert seen(tis) == {"params": {"number_param": 7, "who": "world", "extra": "x"},
                         "conf": {"number_param": 7, "extra": "x"}, "run_type": "manual"}
    assert "7 x" in task_log_path_for_key(tis["echo"].key).read_text()

    state, tis = run_states("conf_dag", "no_conf")
    assert state == "success"
    assert seen(tis) == {"params": {"number_param": 10, "who": "world"}, "conf": {}, "run_type": "manual"}
    assert "10 -" in task_log_path_for_key(tis["echo"].key).read_text()


def test_scheduled_runs_see_their_data_interval_and_the_last_successful_run(crossdock_home, monkeypatch):
    from datetime import datetime, timedelta, timezone

    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.database import create_session
    from crossdock.executors.local_executor import LocalExecutor
    from sqlalchemy import select, update

    from crossdock.models import DagModel, DagRun
    from crossdock.scheduler.scheduler_job import SchedulerJob

    folder = use_dag_files(crossdock_home, monkeypatch)
    start = (datetime.now(timezone.utc) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    (folder / "daily.py").write_text(textwrap.dedent(f'''
        import json
        from datetime import datetime
        from crossdock import DAG, PythonOperator

        def show(data_interval_start, data_interval_end, prev_data_interval_start_success,
                 prev_start_date_success, dag_run):
            print("seen:", json.dumps([str(data_interval_start), str(data_interval_end),
                                       str(prev_data_interval_start_success), prev_start_date_success is not None,
                                       str(dag_run.data_interval_end), dag_run.run_type]))

        with DAG("daily", schedule="@daily", start_date=datetime.fromisoformat("{start.isoformat()}"),
                 catchup=True, max_active_runs=1) as dag:
            PythonOperator(task_id="show", python_callable=show)
    '''))
    with create_session() as session:
        sync_parse_result_to_db(parse_dag_folder(str(folder)), session)
        session.execute(update(DagModel).values(is_paused=False))

    def finished_runs() -> list[str]:
        with create_session() as session:
            return list(session.scalars(select(DagRun.run_id).where(DagRun.dag_id == "daily",
                                                                    DagRun.state == "success")
                                        .order_by(DagRun.logical_date)))

    deadline = time.monotonic() + 60
    SchedulerJob(executors=[LocalExecutor(parallelism=2)], parse_dags=False).run(
        stop_when=lambda job: len(finished_runs()) == 2 or time.monotonic() > deadline)
    run_ids = finished_runs()
    assert len(run_ids) == 2
    day = timedelta(days=1)
    first, second = (seen(run_states("daily", run_id)[1]) for run_id in run_ids)
    assert first == [str(start), str(start + day), "None", False, str(start + day), "scheduled"]
    assert second == [str(start + day), str(start + 2 * day), str(start), True, str(start + 2 * day), "scheduled"]


def test_var_and_conn_reach_templates_in_a_try_through_the_scheduler(crossdock_home, monkeypatch):
    from crossdock.executors.local_executor import LocalExecutor

    folder = use_dag_files(crossdock_home, monkeypatch)
    (crossdock_home / "connections.json").write_text(json.dumps(
        {"my_db": "postgresql://reader:s3cr3t-pass@db.example:5432/sales"}))
    (folder / "secrets_dag.py").write_text(textwrap.dedent('''
        from crossdock import DAG, BashOperator

        with DAG("secrets_dag", schedule=None) as dag:
            BashOperator(task_id="echo", do_xcom_push=False, bash_command=
                "echo {{ var.value.greeting }} {{ conn.my_db.host }}:{{ conn.my_db.port }} {{ var.json.cfg.n }}")
    '''))
    monkeypatch.setenv("CROSSDOCK_VAR_GREETING", "hello")
    monkeypatch.setenv("CROSSDOCK_VAR_CFG", '{"n": 3}')
    parse_and_trigger(folder, "secrets_dag")
    run_scheduler(LocalExecutor(parallelism=2))
    state, tis = run_states("secrets_dag")
    assert state == "success", tis["echo"].failure_reason
    assert "hello db.example:5432 3" in task_log_path_for_key(tis["echo"].key).read_text()
