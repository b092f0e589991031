"""Bad input to the actions: an unknown DAG, run or task, a bad date or regex, each a one-line
error with exit 1 from the CLI and an OperationError with a status from the operations layer."""

from __future__ import annotations

import pytest

from crossdock import database
from crossdock.cli.main import main
from crossdock.operations import (BadRequest, NotFound, OperationError, backfill, clear_task_instances,
                                  delete_pool, mark_task_instances, set_paused, trigger_dag)

from operations_support import parse, write_ledger_dags


@pytest.fixture
def parsed(dags_folder, crossdock_home):
    database.migrate()
    write_ledger_dags(dags_folder, ledger=crossdock_home / "ledger.txt", gate=crossdock_home / "gate", daily=True)
    parse(dags_folder)
    trigger_dag("flow", run_id="r1")  # queued: no scheduler runs here, so it has no task instances


BAD_COMMANDS = [
    (["tasks", "clear", "ghost", "-y"], "DAG 'ghost' not found; known DAGs: daily, flow, held, pooled, quick"),
    (["tasks", "clear", "flow", "--run-id", "nope", "-y"], "DAG 'flow' has no run 'nope'"),
    (["tasks", "clear", "flow", "-t", "zzz", "-y"], "no task of DAG 'flow' matches 'zzz'; its tasks: a, b, c"),
    (["tasks", "clear", "flow", "-t", "(", "-y"], "task regex '(' is not a valid regular expression"),
    (["tasks", "clear", "flow", "-s", "2024-13-01", "-y"], "start date '2024-13-01' is not an ISO-8601 date"),
    (["tasks", "clear", "flow", "-s", "2024-02-01", "-e", "2024-01-01", "-y"], "is after the end date"),
    (["tasks", "mark-success", "ghost", "a", "r1"], "DAG 'ghost' not found"),
    (["tasks", "mark-success", "flow", "ghost", "r1"], "DAG 'flow' has no task 'ghost'; its tasks: a, b, c"),
    (["tasks", "mark-failed", "flow", "a", "nope"], "DAG 'flow' has no run 'nope'"),
    (["tasks", "mark-success", "flow", "a", "r1"], "run 'r1' of DAG 'flow' has no task instances of 'a' yet "
                                                   "(it is queued)"),
    (["tasks", "logs", "flow", "a", "nope"], "DAG 'flow' has no run 'nope'"),
    (["tasks", "logs", "flow", "ghost", "r1"], "run 'r1' of DAG 'flow' has no task instance of 'ghost'"),
    (["dags", "pause", "ghost"], "DAG 'ghost' not found"),
    (["dags", "unpause", "ghost"], "DAG 'ghost' not found"),
    (["dags", "delete-run", "flow", "nope"], "DAG 'flow' has no run 'nope'"),
    (["dags", "delete", "ghost", "-y"], "DAG 'ghost' not found"),
    (["dags", "backfill", "ghost", "-s", "2024-01-01", "-e", "2024-01-02"], "DAG 'ghost' not found"),
    (["dags", "backfill", "flow", "-s", "2024-01-01", "-e", "2024-01-02"], "DAG 'flow' has no regular schedule"),
    (["dags", "backfill", "daily", "-s", "2024-02-01", "-e", "2024-01-01"], "is after the end date"),
    (["dags", "backfill", "daily", "-s", "1900-01-01", "-e", "2100-01-01"], "more than 10000 intervals"),
    (["dags", "trigger", "flow", "-r", "r1"], "DAG 'flow' already has a run with run_id 'r1'"),
    (["dags", "trigger", "flow", "--logical-date", "soon"], "--logical-date 'soon' is not an ISO-8601 date"),
    (["tasks", "clear", "flow"], "Not asked without a terminal: add -y to go ahead"),
]


@pytest.mark.parametrize("argv, message", BAD_COMMANDS, ids=[" ".join(argv[:3]) + f"-{i}"
                                                             for i, (argv, _) in enumerate(BAD_COMMANDS)])
def test_a_bad_action_fails_in_one_line_with_exit_1(parsed, capsys, argv, message):
    if argv[:2] == ["tasks", "clear"] and argv[-1] != "-y":
        _finished_run_with_task_instances()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("crossdock: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err


def _finished_run_with_task_instances():
    """Give ``flow`` a failed run with task instances, as a scheduler would leave it."""
    from crossdock.database import create_session
    from crossdock.models import DagRun, TaskInstance
    from crossdock.models.base import utcnow

    with create_session() as session:
        session.add(DagRun(dag_id="flow", run_id="done", run_type="manual", logical_date=utcnow(), state="failed",
                           queued_at=utcnow(), conf={}))
        session.add(TaskInstance(dag_id="flow", task_id="a", run_id="done", map_index=-1, try_number=1,
                                 max_tries=0, state="failed"))


@pytest.mark.parametrize("call, error, status", [
    (lambda: clear_task_instances("ghost"), NotFound, 404),
    (lambda: mark_task_instances("flow", run_id="r1", task_ids=["a"], state="running"), BadRequest, 400),
    (lambda: set_paused("ghost", paused=True), NotFound, 404),
    (lambda: backfill("daily", start_date="2024-01-02", end_date="2024-01-01"), BadRequest, 400),
    (lambda: delete_pool("default_pool"), BadRequest, 400),
    (lambda: trigger_dag("flow", conf=["not", "an", "object"]), BadRequest, 400),
])
def test_operation_errors_carry_the_status_the_api_answers_with(parsed, call, error, status):
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, OperationError) and info.value.status == status
