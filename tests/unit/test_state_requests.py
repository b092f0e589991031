"""The scheduler applies users' requests in order, to the runs it holds and to those it does
not, and a request it cannot apply is recorded as such without holding back the next one.
Checked through the scripted executor (see scheduler_support)."""

from __future__ import annotations

from sqlalchemy import select

from crossdock import database
from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.models import StateRequest
from crossdock.models.base import utcnow
from crossdock.scheduler.dag_runs import create_dag_run
from crossdock.scheduler.scheduler_job import SchedulerJob
from crossdock.state import TaskInstanceState as S

from operations_support import parse, states
from scheduler_support import ScriptedExecutor, write_dag

MAX_LOOPS = 2000


def request(action, keys, run_id="r1"):
    with create_session() as session:
        row = StateRequest(dag_id="chain", run_id=run_id, action=action, task_keys=keys, requested_at=utcnow())
        session.add(row)
        session.flush()
        return row.id


def test_requests_apply_in_order_and_a_bad_one_is_recorded_not_retried(dags_folder, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__SCHEDULER__NEW_RUNS_POLL_INTERVAL", "0")
    conf.reload()
    database.migrate()
    write_dag(dags_folder, "chain", """
        with DAG("chain") as dag:
            BashOperator(task_id="a", bash_command="true") >> BashOperator(task_id="b", bash_command="true")
    """)
    parse(dags_folder)
    with create_session() as session:
        create_dag_run(session, dag_id="chain", run_id="r1")
    executor = ScriptedExecutor(outcomes={"b": [S.FAILED, S.SUCCESS]})
    SchedulerJob(executors=[executor], parse_dags=False).run(stop_when=lambda job: not job.runs and job.loop_count > 1,
                                                             max_loops=MAX_LOOPS)
    assert states("chain", "r1")[0] == "failed"

    bogus = request("explode", [["b", -1]])
    mark = request("success", [["a", -1], ["b", -1]])  # a is success already: only b changes
    clear = request("clear", [["b", -1]])
    job = SchedulerJob(executors=[executor], parse_dags=False)
    job.run(stop_when=lambda j: j.loop_count > 2 and not j.runs, max_loops=MAX_LOOPS)

    with create_session() as session:
        outcomes = {row.id: (row.outcome, row.applied_by_job_id) for row in session.scalars(select(StateRequest))}
    assert outcomes[bogus] == ("not applied: ValueError: unknown action 'explode'; known: clear, success, failed",
                               job.job_id)
    assert outcomes[mark] == ("1 task instance(s) marked success", job.job_id)
    assert outcomes[clear] == ("1 task instance(s) cleared", job.job_id)
    run_state, tis = states("chain", "r1")
    assert run_state == "success", "marked, then cleared: b ran again (its second scripted try succeeds)"
    assert tis["b"].try_number == 2 and tis["a"].try_number == 1
