"""``crossdock dags test``: one DAG run in the foreground, run as a user runs it (the real CLI in
a subprocess), each try a real forked ``tasks run``. Every task appends to a ledger file, so
the tests see what ran, how often, and with which values handed over."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

LINE = re.compile(r"^(?P<task>\S+)\s{2,}(?P<state>\S+)\s{2,}(?P<duration>-|\d+\.\d\ds)(?:\s{2}(?P<reason>.*))?$")

PREAMBLE = '''
import os
from datetime import timedelta
from crossdock import DAG, task, BashOperator, EmptyOperator
from crossdock.dag.exceptions import AirflowFailException, AirflowSkipException
from crossdock.dag.param import Param


def note(*words):
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(" ".join(str(word) for word in words) + "\\n")
'''

FLOW_DAG = PREAMBLE + '''
with DAG("flow", schedule=None, params={"n": Param(1, type="integer", minimum=0)}):
    @task
    def start(**context):
        note("start", context["params"]["n"])
        return context["params"]["n"]

    @task
    def double(x):
        note("double", x)
        return x * 2

    @task(retries=1, retry_delay=timedelta(0))
    def flaky(x):
        marker = os.environ["LEDGER"] + ".failed-once"
        note("flaky", x)
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first try fails")
        return x + 1

    @task.branch
    def pick(x):
        note("pick", x)
        return "big" if x > 4 else "small"

    @task
    def big():
        note("big")

    @task
    def small():
        note("small")

    @task(trigger_rule="none_failed_min_one_success")
    def join(**context):
        note("join", context["ti"].xcom_pull(task_ids="flaky"))

    pick(flaky(double(start()))) >> [big(), small()] >> join() >> EmptyOperator(task_id="end")
'''

TROUBLE_DAG = PREAMBLE + '''
def refuse():
    note("refuse")
    raise AirflowFailException("the input is unusable")


def leave():
    note("leave")
    raise AirflowSkipException("nothing to do today")


with DAG("trouble", schedule=None):
    from crossdock import PythonOperator

    hard = PythonOperator(task_id="hard", python_callable=refuse, retries=3, retry_delay=timedelta(0))
    after_hard = BashOperator(task_id="after_hard", bash_command="echo after_hard >> $LEDGER")
    cleanup = BashOperator(task_id="cleanup", bash_command="echo cleanup >> $LEDGER", trigger_rule="all_done")
    skip = PythonOperator(task_id="skip", python_callable=leave)
    after_skip = BashOperator(task_id="after_skip", bash_command="echo after_skip >> $LEDGER")
    hard >> after_hard >> cleanup
    skip >> after_skip
'''


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv("LEDGER", str(path))
    return path


def write_dag(folder, name, source):
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def dags_test(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "crossdock", "dags", "test", *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


def outcome_lines(stdout):
    """(task_id, state, reason) of each task line, in order, and the summary line."""
    *lines, summary = stdout.strip().splitlines()
    parsed = []
    for line in lines:
        match = LINE.match(line)
        assert match, f"not a task line: {line!r}"
        parsed.append((match["task"], match["state"], match["reason"]))
    return parsed, summary


def ledger_lines(ledger):
    return ledger.read_text().splitlines() if ledger.exists() else []


def test_a_run_passes_values_follows_its_branch_retries_and_honours_the_conf(dags_folder, ledger):
    write_dag(dags_folder, "flow", FLOW_DAG)
    done = dags_test("flow", "2024-03-01", "--conf", '{"n": 3}')
    assert done.returncode == 0, done.stderr
    lines, summary = outcome_lines(done.stdout)
    assert lines == [
        ("start", "success", None),
        ("double", "success", None),
        ("flaky", "up_for_retry", "RuntimeError: first try fails; retry 1 of 1 in 0.0s"),
        ("flaky", "success", None),
        ("pick", "success", None),
        ("small", "skipped", "not chosen by branch 'pick'"),
        ("big", "success", None),
        ("join", "success", None),
        ("end", "success", "EmptyOperator: succeeded without a try"),
    ]
    assert summary.startswith("run manual__2024-03-01T00:00:00+00:00 of DAG flow: success "
                              "(1 skipped, 7 success) in ")
    assert done.stdout.splitlines()[-2].split()[2] == "-"  # no try, so no duration
    # conf n=3 over the Param's default 1; each value reaches the next try; flaky ran twice
    assert ledger_lines(ledger) == ["start 3", "double 3", "flaky 6", "flaky 6", "pick 7", "big", "join 7"]
    # each try's log reached the console, and its log file is where `tasks logs` finds it
    assert "Following branch ['big']" in done.stderr
    assert "RuntimeError: first try fails" in done.stderr
    logs = os.environ["CROSSDOCK_HOME"] + "/logs/dag_id=flow/run_id=manual__2024-03-01T00:00:00+00:00"
    assert sorted(os.listdir(logs + "/task_id=flaky")) == ["attempt=1.log", "attempt=2.log"]


def test_without_conf_the_params_default_applies_and_the_other_branch_runs(dags_folder, ledger):
    write_dag(dags_folder, "flow", FLOW_DAG)
    (ledger.parent / "ledger.txt.failed-once").touch()  # flaky succeeds at once this time
    done = dags_test("flow")
    assert done.returncode == 0, done.stderr
    lines, summary = outcome_lines(done.stdout)
    assert [(task_id, state) for task_id, state, _ in lines] == [
        ("start", "success"), ("double", "success"), ("flaky", "success"), ("pick", "success"),
        ("big", "skipped"), ("small", "success"), ("join", "success"), ("end", "success")]
    assert re.match(r"run manual__\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 of DAG flow: success", summary)
    assert ledger_lines(ledger) == ["start 1", "double 1", "flaky 2", "pick 3", "small", "join 3"]


def test_a_fail_exception_is_not_retried_and_a_skip_skips_what_needs_it(dags_folder, ledger):
    write_dag(dags_folder, "trouble", TROUBLE_DAG)
    done = dags_test("trouble", "2024-03-01T06:00:00")
    assert done.returncode == 1, done.stderr
    lines, summary = outcome_lines(done.stdout)
    assert lines == [
        ("hard", "failed", "the input is unusable (AirflowFailException: not retried)"),
        ("after_hard", "upstream_failed", "trigger rule all_success; upstream: 1 failed"),
        ("skip", "skipped", "nothing to do today"),  # ready beside cleanup, and of higher priority weight
        ("after_skip", "skipped", "trigger rule all_success; upstream: 1 skipped"),
        ("cleanup", "success", None),
    ]
    assert summary.startswith("run manual__2024-03-01T06:00:00+00:00 of DAG trouble: failed "
                              "(1 failed, 2 skipped, 1 success, 1 upstream_failed) in ")
    assert ledger_lines(ledger) == ["refuse", "leave", "cleanup"]  # hard ran once of its 4 allowed tries


@pytest.mark.parametrize("args, message", [
    (["nosuchdag"], "DAG 'nosuchdag' not found"),
    (["flow", "--conf", '{"n": -1}'], "no run of DAG 'flow' was started: param 'n': -1 is less than the minimum of 0"),
    (["flow", "--conf", '{"n": '], "--conf is not valid JSON"),
    (["flow", "--conf", "[1]"], "--conf must be a JSON object, not list"),
    (["flow", "yesterday"], "LOGICAL_DATE 'yesterday' is not an ISO 8601 date"),
])
def test_bad_arguments_exit_2_with_one_line_and_run_nothing(dags_folder, ledger, args, message):
    write_dag(dags_folder, "flow", FLOW_DAG)
    done = dags_test(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"crossdock: error: {message}")
    assert not ledger.exists()


def test_a_dag_file_that_does_not_import_is_a_bad_argument(dags_folder, ledger):
    path = write_dag(dags_folder, "broken", PREAMBLE + "\nwith DAG('broken'):\n    undefined_name\n")
    done = dags_test("broken", "-S", str(path))
    assert done.returncode == 2
    assert done.stderr.strip() == f"crossdock: error: {path}: NameError: name 'undefined_name' is not defined"


def test_it_never_opens_the_metadata_database(dags_folder, ledger, crossdock_home, monkeypatch):
    """Pointed at a PostgreSQL nobody listens on, the run still succeeds: nothing connects."""
    monkeypatch.setenv("CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN", "postgresql://crossdock@127.0.0.1:9/unreachable")
    write_dag(dags_folder, "flow", FLOW_DAG)
    (ledger.parent / "ledger.txt.failed-once").touch()
    done = dags_test("flow", "2024-03-01")
    assert done.returncode == 0, done.stderr
    assert "success" in done.stdout.strip().splitlines()[-1]
    assert not (crossdock_home / "crossdock.db").exists()


def test_a_dag_file_outside_the_dags_folder_runs_when_named(dags_folder, ledger, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = write_dag(elsewhere, "flow", FLOW_DAG)
    (ledger.parent / "ledger.txt.failed-once").touch()
    done = dags_test("flow", "2024-03-01", "-S", str(path))
    assert done.returncode == 0, done.stderr
    assert f"{path} is outside [core] dags_folder; this run uses {elsewhere} as its DAGs folder" in done.stderr
    assert ledger_lines(ledger)[0] == "start 1"


def test_a_reschedule_sensor_steps_aside_while_other_tasks_run(dags_folder, ledger, tmp_path):
    """The sensor gives way between pokes (not charged to its retries), so the task it waits
    for runs meanwhile, as on a scheduler."""
    pytest.importorskip("crossdock.dag.sensors")
    flag = tmp_path / "flag"
    write_dag(dags_folder, "sensing", PREAMBLE + f'''
from crossdock.dag.sensors import FileSensor

with DAG("sensing", schedule=None):
    wait = FileSensor(task_id="wait", filepath="{flag}", poke_interval=0.5, timeout=30, mode="reschedule")
    make = BashOperator(task_id="make", bash_command="sleep 1; touch {flag}; echo make >> $LEDGER")
    after = BashOperator(task_id="after", bash_command="echo after >> $LEDGER")
    wait >> after
''')
    done = dags_test("sensing", "2024-03-01")
    assert done.returncode == 0, done.stderr
    lines, _ = outcome_lines(done.stdout)
    assert lines[0] == ("wait", "up_for_reschedule", "next poke in 0.5s")
    assert lines[1] == ("make", "success", None)
    assert lines[-2:] == [("wait", "success", None), ("after", "success", None)]
    assert ledger_lines(ledger) == ["make", "after"]


def test_ctrl_c_stops_the_running_try_and_says_the_run_was_interrupted(dags_folder, ledger):
    import signal
    import time

    write_dag(dags_folder, "slow", PREAMBLE + '''
with DAG("slow", schedule=None):
    BashOperator(task_id="nap", bash_command="echo $$ >> $LEDGER; exec sleep 60")
''')
    cli = subprocess.Popen([sys.executable, "-m", "crossdock", "dags", "test", "slow", "2024-03-01"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    deadline = time.monotonic() + 30
    while not ledger_lines(ledger) and time.monotonic() < deadline:
        time.sleep(0.05)
    [sleeper] = ledger_lines(ledger)
    cli.send_signal(signal.SIGINT)
    out, _ = cli.communicate(timeout=30)
    assert cli.returncode == 130
    assert re.fullmatch(r"run manual__2024-03-01T00:00:00\+00:00 of DAG slow: interrupted after \d+\.\d\ds\n", out)
    deadline = time.monotonic() + 5  # killed with the try's process group; init reaps it
    while time.monotonic() < deadline:
        try:
            os.kill(int(sleeper), 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the task's process {sleeper} outlived the interrupted run")


def test_what_a_branch_or_short_circuit_skips_is_read_from_the_dag_alone():
    """The scheduler and ``dags test`` share this: a join downstream of the chosen task is kept."""
    from crossdock import DAG, BashOperator
    from crossdock.dag.serialization import SerializedDAG, serialize_dag
    from crossdock.scheduler.event_application import unchosen_task_ids

    with DAG("shapes", schedule=None) as dag:
        branch, a, b, join, tail = (BashOperator(task_id=name, bash_command="true")
                                    for name in ("branch", "a", "b", "join", "tail"))
        branch >> [a, b, join]
        a >> join >> tail
    shapes = SerializedDAG.from_dict(serialize_dag(dag))
    assert unchosen_task_ids(shapes, "branch", {"follow": ["a"]}) == {"b"}
    assert unchosen_task_ids(shapes, "branch", {"follow": []}) == {"a", "b", "join"}
    assert unchosen_task_ids(shapes, "branch", {"skip_descendants": True}) == {"a", "b", "join", "tail"}
    assert unchosen_task_ids(shapes, "branch", {}) == set()


MAPPED_DAG = PREAMBLE + '''
with DAG("mapped", schedule=None):
    @task
    def numbers():
        note("numbers")
        return [1, 2, 3]

    @task(retries=1, retry_delay=timedelta(0))
    def square(x):
        marker = os.environ["LEDGER"] + f".failed-{x}"
        note("square", x)
        if x == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first try of 2 fails")
        return x * x

    @task
    def total(values):
        note("total", sorted(values))

    @task
    def nothing():
        return []

    @task
    def never(x):
        note("never", x)

    total(square.expand(x=numbers()))
    never.expand(x=nothing())
    BashOperator.partial(task_id="echo").expand(bash_command=["echo a", "echo b"])
'''


def test_a_mapped_task_runs_one_try_per_element_and_downstream_gets_the_list(dags_folder, ledger):
    write_dag(dags_folder, "mapped", MAPPED_DAG)
    done = dags_test("mapped")
    assert done.returncode == 0, done.stdout + done.stderr
    lines, summary = outcome_lines(done.stdout)
    states = {(task_id, state) for task_id, state, _ in lines}
    assert {("square[0]", "success"), ("square[1]", "up_for_retry"), ("square[1]", "success"),
            ("square[2]", "success"), ("echo[0]", "success"), ("echo[1]", "success"),
            ("total", "success"), ("never", "skipped")} <= states
    assert dict((t, r) for t, s, r in lines if t == "never")["never"] == "mapped over an empty list"
    runs = ledger_lines(ledger)
    assert sorted(line for line in runs if line.startswith("square")) == ["square 1", "square 2", "square 2",
                                                                          "square 3"]
    assert "total [1, 4, 9]" in runs and not any(line.startswith("never") for line in runs)
    assert summary.startswith("run manual__") and ": success" in summary
