"""The scheduler's rules, checked through a scripted executor (see scheduler_support)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from crossdock import database
from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.models import DagRun, Job, Pool, TaskInstance
from crossdock.models.base import utcnow
from crossdock.scheduler import scheduler_job as scheduler_module
from crossdock.scheduler.dag_runs import create_dag_run
from crossdock.scheduler.scheduler_job import SchedulerJob
from crossdock.state import TaskInstanceState as S

from scheduler_support import HANG, ScriptedExecutor, write_dag

MAX_LOOPS = 2000


@pytest.fixture
def dags_folder(dags_folder, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__DAG_DIR_LIST_INTERVAL", "0")
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__MAX_LOOP_SLEEP", "0.001")
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__NEW_RUNS_POLL_INTERVAL", "0")
    conf.reload()
    database.migrate()
    return dags_folder


def parse(folder):
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder

    result = parse_dag_folder(str(folder))
    with create_session() as session:
        sync_parse_result_to_db(result, session)
    return result


def trigger(dag_id, run_id="r1"):
    with create_session() as session:
        return create_dag_run(session, dag_id=dag_id, run_id=run_id).run_id


def run_states(dag_id, run_id="r1"):
    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one()
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                         TaskInstance.run_id == run_id)).all()
        return run.state, {ti.task_id: ti for ti in tis}


def runs_done(job):
    return not job.runs and job.loop_count > 1


def run_scheduler(executor, *, stop_when=runs_done, parse_dags=False, **kwargs):
    job = SchedulerJob(executors=[executor], parse_dags=parse_dags, **kwargs)
    job.run(stop_when=stop_when, max_loops=MAX_LOOPS)
    return job


def test_chain_runs_in_dependency_order_and_run_succeeds(dags_folder):
    write_dag(dags_folder, "chain", """
        with DAG("chain") as dag:
            a = BashOperator(task_id="a", bash_command="true")
            b = BashOperator(task_id="b", bash_command="true")
            c = BashOperator(task_id="c", bash_command="true")
            a >> b >> c
    """)
    parse(dags_folder)
    trigger("chain")
    executor = ScriptedExecutor()
    run_scheduler(executor)
    assert [key.task_id for key in executor.started] == ["a", "b", "c"]
    state, tis = run_states("chain")
    assert state == "success"
    assert {t: ti.state for t, ti in tis.items()} == {"a": "success", "b": "success", "c": "success"}
    assert all(ti.try_number == 1 and ti.hostname == "scripted-host" for ti in tis.values())
    assert all(ti.duration is not None and ti.start_date <= ti.end_date for ti in tis.values())


def test_command_is_a_crossdock_task_command_with_the_dag_file(dags_folder):
    write_dag(dags_folder, "one", """
        with DAG("one") as dag:
            BashOperator(task_id="only", bash_command="true", queue="special")
    """)
    parse(dags_folder)
    trigger("one")
    executor = ScriptedExecutor()
    run_scheduler(executor)
    (key,) = executor.started
    command, queue = executor.commands[key]
    with create_session() as session:
        logical_date = session.scalars(select(DagRun.logical_date).where(DagRun.dag_id == "one")).one()
    # The run's logical date travels with the command: the runner no longer guesses it from the run id.
    assert command[:12] == ["crossdock", "tasks", "run", "one", "only", "r1", "--try-number", "1",
                            "--subdir", "DAGS_FOLDER/one.py", "--logical-date", logical_date.isoformat()]
    # "r1" does not name its run type, so the type is handed over with the inputs (no values, no conf).
    from crossdock.runner.try_inputs import decode_inputs

    assert command[12] == "--inputs" and len(command) == 14
    inputs = decode_inputs(command[13])
    assert (inputs.run_type, inputs.conf, dict(inputs.values)) == ("manual", None, {})
    assert queue == "special"


def test_failure_retries_then_fails_and_downstream_is_upstream_failed(dags_folder):
    write_dag(dags_folder, "flaky", """
        with DAG("flaky") as dag:
            a = BashOperator(task_id="a", bash_command="true", retries=2, retry_delay=0)
            b = BashOperator(task_id="b", bash_command="true")
            a >> b
    """)
    parse(dags_folder)
    trigger("flaky")
    executor = ScriptedExecutor(outcomes={"a": [S.FAILED, S.FAILED, S.FAILED]})
    run_scheduler(executor)
    state, tis = run_states("flaky")
    assert state == "failed"
    assert tis["a"].state == "failed" and tis["a"].try_number == 3
    assert "scripted failure of a try 3" in tis["a"].failure_reason
    assert tis["b"].state == "upstream_failed"
    assert [k.try_number for k in executor.started] == [1, 2, 3]


def test_retry_succeeds_and_waits_for_retry_delay(dags_folder):
    write_dag(dags_folder, "retry", """
        with DAG("retry") as dag:
            BashOperator(task_id="a", bash_command="true", retries=1, retry_delay=0.3)
    """)
    parse(dags_folder)
    trigger("retry")
    executor = ScriptedExecutor(outcomes={"a": [S.FAILED, S.SUCCESS]})
    run_scheduler(executor)
    state, tis = run_states("retry")
    assert state == "success"
    assert tis["a"].try_number == 2
    # the second try was queued no earlier than the retry delay after the first ended
    assert tis["a"].queued_dttm is not None


def test_priority_weight_orders_queueing_with_parallelism_one(dags_folder, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CORE__PARALLELISM", "1")
    conf.reload()
    write_dag(dags_folder, "prio", """
        with DAG("prio") as dag:
            low = BashOperator(task_id="low", bash_command="true", priority_weight=1)
            high = BashOperator(task_id="high", bash_command="true", priority_weight=10)
            mid = BashOperator(task_id="mid", bash_command="true", priority_weight=5)
    """)
    parse(dags_folder)
    trigger("prio")
    executor = ScriptedExecutor()
    run_scheduler(executor)
    assert [k.task_id for k in executor.started] == ["high", "mid", "low"]
    assert executor.max_running == 1


def test_max_active_tasks_and_pools_limit_concurrency(dags_folder):
    with create_session() as session:
        session.add(Pool(pool="tiny", slots=2))
    write_dag(dags_folder, "wide", """
        with DAG("wide", max_active_tasks=3) as dag:
            for i in range(8):
                BashOperator(task_id=f"t{i}", bash_command="true")
        with DAG("pooled") as dag2:
            for i in range(6):
                BashOperator(task_id=f"p{i}", bash_command="true", pool="tiny")
    """)
    parse(dags_folder)
    trigger("wide")
    executor = ScriptedExecutor(beats=3)
    run_scheduler(executor)
    assert executor.max_running == 3
    assert run_states("wide")[0] == "success"

    trigger("pooled")
    executor = ScriptedExecutor(beats=3)
    run_scheduler(executor)
    assert executor.max_running == 2
    assert run_states("pooled")[0] == "success"


def test_unknown_pool_and_unknown_executor_fail_the_task_with_a_reason(dags_folder):
    write_dag(dags_folder, "odd", """
        with DAG("odd") as dag:
            BashOperator(task_id="nopool", bash_command="true", pool="missing")
            BashOperator(task_id="fine", bash_command="true")
    """)
    parse(dags_folder)
    trigger("odd")
    run_scheduler(ScriptedExecutor())
    state, tis = run_states("odd")
    assert state == "failed"
    assert tis["nopool"].failure_reason == "pool 'missing' does not exist"
    assert tis["fine"].state == "success"


def test_trigger_rule_all_done_runs_after_a_failure(dags_folder):
    write_dag(dags_folder, "cleanup", """
        with DAG("cleanup") as dag:
            work = BashOperator(task_id="work", bash_command="false")
            tidy = BashOperator(task_id="tidy", bash_command="true", trigger_rule="all_done")
            work >> tidy
    """)
    parse(dags_folder)
    trigger("cleanup")
    run_scheduler(ScriptedExecutor(outcomes={"work": [S.FAILED]}))
    state, tis = run_states("cleanup")
    assert tis["work"].state == "failed"
    assert tis["tidy"].state == "success"
    assert state == "failed"


def test_stuck_in_queued_is_requeued_then_failed(dags_folder, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__TASK_QUEUED_TIMEOUT", "0.05")
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__NUM_STUCK_IN_QUEUED_RETRIES", "2")
    monkeypatch.setattr(scheduler_module, "HOUSEKEEPING_INTERVAL", 0.02)
    conf.reload()
    write_dag(dags_folder, "stuck", """
        with DAG("stuck") as dag:
            BashOperator(task_id="s", bash_command="true", retries=0)
    """)
    parse(dags_folder)
    trigger("stuck")

    class NeverStarts(ScriptedExecutor):
        def sync(self):  # the task never leaves the queue: no worker consumes it
            pass

    executor = NeverStarts()
    run_scheduler(executor)
    state, tis = run_states("stuck")
    assert state == "failed"
    assert tis["s"].state == "failed"
    assert "stuck in queued" in tis["s"].failure_reason
    assert tis["s"].stuck_in_queued_count == 2
    # three tries were sent, each revoked; the task's own retries (0) were not spent
    assert [k.try_number for k in executor.started] == [1, 2, 3]
    assert len(executor.revoked) == 3


def test_stale_event_from_an_old_try_is_ignored(dags_folder):
    write_dag(dags_folder, "stale", """
        with DAG("stale") as dag:
            BashOperator(task_id="x", bash_command="true", retries=1, retry_delay=0)
    """)
    parse(dags_folder)
    trigger("stale")
    executor = ScriptedExecutor(outcomes={"x": [S.FAILED, HANG]})
    job = SchedulerJob(executors=[executor], parse_dags=False)
    job.start()
    for _ in range(50):
        job.loop_once()
        if any(k.try_number == 2 for k in executor.started):
            break
    first = executor.started[0]
    executor.event_buffer[first] = (S.SUCCESS, None)  # a late report about try 1
    job.loop_once()
    _, tis = run_states("stale")
    assert tis["x"].try_number == 2 and tis["x"].state in ("queued", "running")
    job.shutdown()


def test_restarted_scheduler_adopts_or_resets_orphans(dags_folder, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD", "1")
    conf.reload()
    write_dag(dags_folder, "long", """
        with DAG("long") as dag:
            a = BashOperator(task_id="a", bash_command="true")
            b = BashOperator(task_id="b", bash_command="true")
            a >> b
    """)
    parse(dags_folder)
    trigger("long", "r1")
    trigger("long", "r2")
    crashed = SchedulerJob(executors=[ScriptedExecutor(outcomes={"a": [HANG]})], parse_dags=False)
    crashed.start()
    for _ in range(20):
        crashed.loop_once()
    # The first scheduler dies without shutting down; its heartbeat goes stale.
    with create_session() as session:
        session.execute(update(Job).where(Job.id == crashed.job_id)
                        .values(latest_heartbeat=utcnow() - timedelta(seconds=60)))
    _, tis = run_states("long", "r1")
    assert tis["a"].state == "running" and tis["a"].queued_by_job_id == crashed.job_id

    adopting = ScriptedExecutor(adopt=True)
    job = run_scheduler(adopting)
    for run_id in ("r1", "r2"):
        state, tis = run_states("long", run_id)
        assert state == "success"
        # adopted, not re-run: still the first try, now owned by the new job
        assert tis["a"].try_number == 1
        assert tis["a"].queued_by_job_id == job.job_id
    assert all(k.task_id == "b" for k in adopting.started)


def test_orphans_not_adopted_are_run_again_without_spending_retries(dags_folder, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD", "1")
    conf.reload()
    write_dag(dags_folder, "once", """
        with DAG("once") as dag:
            BashOperator(task_id="a", bash_command="true", retries=0)
    """)
    parse(dags_folder)
    trigger("once")
    crashed = SchedulerJob(executors=[ScriptedExecutor(outcomes={"a": [HANG]})], parse_dags=False)
    crashed.start()
    for _ in range(10):
        crashed.loop_once()
    with create_session() as session:
        session.execute(update(Job).where(Job.id == crashed.job_id)
                        .values(latest_heartbeat=utcnow() - timedelta(seconds=60)))
    run_scheduler(ScriptedExecutor(adopt=False))
    state, tis = run_states("once")
    assert state == "success"
    assert tis["a"].try_number == 2 and tis["a"].max_tries == 1


def test_invalid_serialized_dag_fails_the_run_without_crashing(dags_folder):
    write_dag(dags_folder, "gone", """
        with DAG("gone") as dag:
            BashOperator(task_id="a", bash_command="true")
    """)
    parse(dags_folder)
    trigger("gone")
    from crossdock.models import SerializedDagModel

    with create_session() as session:
        session.delete(session.get(SerializedDagModel, "gone"))
    run_scheduler(ScriptedExecutor(), stop_when=lambda job: job.loop_count >= 3)
    assert run_states("gone")[0] == "failed"


def test_max_active_runs_keeps_extra_runs_queued(dags_folder):
    write_dag(dags_folder, "serial", """
        with DAG("serial", max_active_runs=1) as dag:
            BashOperator(task_id="a", bash_command="true")
    """)
    parse(dags_folder)
    trigger("serial", "r1")
    trigger("serial", "r2")
    executor = ScriptedExecutor(beats=2)
    job = SchedulerJob(executors=[executor], parse_dags=False)
    job.start()
    assert len(job.runs) == 1
    job.loop_once()
    with create_session() as session:
        states = dict(session.execute(select(DagRun.run_id, DagRun.state).where(DagRun.dag_id == "serial")).all())
    assert states == {"r1": "running", "r2": "queued"}
    job.run(stop_when=lambda j: not j.runs and run_states("serial", "r2")[0] == "success", max_loops=MAX_LOOPS)
    assert run_states("serial", "r1")[0] == "success"


def test_scheduled_dag_creates_runs_for_due_intervals(dags_folder):
    write_dag(dags_folder, "cron", """
        with DAG("cron", schedule="*/5 * * * *", start_date=datetime(2026, 1, 1), catchup=False) as dag:
            BashOperator(task_id="a", bash_command="true")
    """)
    parse(dags_folder)
    job = SchedulerJob(executors=[ScriptedExecutor()], parse_dags=False)
    job.run(stop_when=lambda j: j.loop_count > 3 and not j.runs, max_loops=MAX_LOOPS)
    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == "cron")).all()
    # catchup=False: only the latest complete interval runs, not every interval since January
    assert len(runs) == 1
    run = runs[0]
    assert run.run_type == "scheduled" and run.state == "success"
    assert run.data_interval_end - run.data_interval_start == timedelta(minutes=5)
    assert run.data_interval_end <= utcnow()


def test_job_row_heartbeats_and_closes(dags_folder):
    executor = ScriptedExecutor()
    job = run_scheduler(executor, stop_when=lambda j: j.loop_count >= 2)
    with create_session() as session:
        row = session.get(Job, job.job_id)
    assert row.state == "success" and row.end_date is not None
    assert executor.ended and executor.job_id == job.job_id


def test_several_executors_per_task_executor_and_routing_rules(dags_folder, monkeypatch, capsys):
    monkeypatch.setenv("CROSSDOCK__CORE__EXECUTOR", "LocalExecutor,Other:crossdock.executors.local_executor.LocalExecutor")
    monkeypatch.setenv("CROSSDOCK__EXECUTOR_ROUTING__RULES", "gpu-*=Other")
    conf.reload()
    write_dag(dags_folder, "mixed", """
        with DAG("mixed") as dag:
            BashOperator(task_id="plain", bash_command="true")
            BashOperator(task_id="named", bash_command="true", executor="Other")
            BashOperator(task_id="gpu", bash_command="true", queue="gpu-large")
    """)
    write_dag(dags_folder, "wrong", """
        with DAG("wrong") as dag:
            BashOperator(task_id="t", bash_command="true", executor="NomadExecutor")
    """)
    result = parse(dags_folder)
    (error,) = [e for path, e in result.import_errors.items() if path.endswith("wrong.py")]
    assert "names executor 'NomadExecutor', which is not configured" in error
    trigger("mixed")
    default, other = ScriptedExecutor(), ScriptedExecutor()
    default.name, other.name = "LocalExecutor", "Other"
    job = SchedulerJob(executors=[default, other], parse_dags=False)
    job.run(stop_when=runs_done, max_loops=MAX_LOOPS)
    assert [k.task_id for k in default.started] == ["plain"]
    assert sorted(k.task_id for k in other.started) == ["gpu", "named"]
    state, tis = run_states("mixed")
    assert state == "success"
    assert {t: ti.executor for t, ti in tis.items()} == {"plain": "LocalExecutor", "named": "Other", "gpu": "Other"}
    assert tis["plain"].routing_reason == "queue 'default': no [executor_routing] rule matched, the default executor"
    assert tis["named"].routing_reason == "executor='Other' on the task"
    assert tis["gpu"].routing_reason == "queue 'gpu-large' matched [executor_routing] rule 'gpu-*' = Other"
    from crossdock.cli.main import main

    capsys.readouterr()
    assert main(["tasks", "states-for-dag-run", "mixed", "r1", "-o", "json"]) == 0
    rows = {row["task_id"]: row for row in json.loads(capsys.readouterr().out)}
    assert (rows["gpu"]["executor"], rows["gpu"]["routing_reason"]) == ("Other", tis["gpu"].routing_reason)


def test_routing_rule_naming_an_unconfigured_executor_fails_at_start(dags_folder, monkeypatch):
    from crossdock.configuration import ConfigError

    monkeypatch.setenv("CROSSDOCK__EXECUTOR_ROUTING__RULES", "gpu-*=KubernetesExecutor")
    conf.reload()
    with pytest.raises(ConfigError, match="names an executor that is not configured"):
        SchedulerJob(executors=[ScriptedExecutor()], parse_dags=False)


def test_success_without_a_running_event_still_records_where_it_ran(dags_folder):
    """A try that started and ended between two syncs: the success event names the worker."""
    write_dag(dags_folder, "quick", """
        with DAG("quick") as dag:
            BashOperator(task_id="a", bash_command="true")
    """)
    parse(dags_folder)
    trigger("quick")

    class NoStartedSeen(ScriptedExecutor):
        def sync(self):
            for key in sorted(self.running):
                self.success(key, {"hostname": "worker-7", "pid": 99})

    run_scheduler(NoStartedSeen())
    state, tis = run_states("quick")
    assert state == "success"
    assert (tis["a"].hostname, tis["a"].pid) == ("worker-7", 99)
