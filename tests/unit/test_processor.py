"""The DAG-folder processor: user code parsed in child processes, with timeouts and errors."""

import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest

from crossdock.configuration import conf
from crossdock.dag import fork_server
from crossdock.dag.loader import EXAMPLE_DAGS_FOLDER
from crossdock.dag.processor import parse_dag_file, parse_dag_folder

FIXTURES = Path(__file__).parent / "dag_files"
GOOD = "from crossdock import DAG, BashOperator\nwith DAG('{id}') as dag:\n    BashOperator('t', 'true')\n"


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_dead(pid: int) -> bool:
    for _ in range(100):
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(params=["fork_server", "interpreter_per_file"])
def parse_mode(request, monkeypatch):
    """Run a test through the fork server and through the fallback of one interpreter per file."""
    if request.param == "interpreter_per_file":
        monkeypatch.setattr(fork_server, "parse_files", lambda files, **_: {})
    return request.param


def test_hanging_file_is_killed_with_its_children_and_the_others_are_parsed(tmp_path, parse_mode):
    folder = tmp_path / "dags"
    pids = tmp_path / "pids"
    write(folder, "a_good.py", GOOD.format(id="good_a"))
    write(folder, "b_hangs.py", f"""\
        import os, subprocess, time
        from crossdock import DAG
        child = subprocess.Popen(["sleep", "3600"])
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(3600)
        """)
    write(folder, "c_good.py", GOOD.format(id="good_c"))
    shutil.copy(FIXTURES / "raises_at_import.py", folder / "d_raises.py")

    result = parse_dag_folder(folder, timeout=2)

    assert sorted(result.dag_ids) == ["good_a", "good_c"]
    assert result.import_errors[str(folder / "b_hangs.py")] == "timed out after 2 s"
    assert "RuntimeError: settings service unreachable" in result.import_errors[str(folder / "d_raises.py")]
    assert set(result.import_errors) == {str(folder / "b_hangs.py"), str(folder / "d_raises.py")}
    assert result.files == sorted(str(path) for path in folder.glob("*.py"))
    assert result.complete and result.duration > 0
    parser_pid, grandchild_pid = map(int, pids.read_text().split())
    assert wait_dead(parser_pid), "the hanging parser process survived"
    assert wait_dead(grandchild_pid), "a process started by the hanging file survived"


def test_output_printed_by_a_dag_file_does_not_corrupt_the_result(tmp_path, parse_mode):
    folder = tmp_path / "dags"
    write(folder, "chatty.py", "import sys\nprint('{\"not\": \"json\"')\nprint('noise', file=sys.stderr)\n"
                               + GOOD.format(id="chatty"))
    result = parse_dag_folder(folder, timeout=10)
    assert result.dag_ids == ["chatty"] and result.import_errors == {}


def test_user_code_never_runs_in_the_calling_process(tmp_path, parse_mode):
    folder = tmp_path / "dags"
    write(folder, "sneaky.py", "import os\nos.environ['PARSED_HERE'] = 'yes'\n" + GOOD.format(id="sneaky"))
    result = parse_dag_folder(folder, timeout=10)
    assert result.dag_ids == ["sneaky"]
    assert "PARSED_HERE" not in os.environ
    assert not any(name.startswith("crossdock_dagfile_") and "sneaky" in name for name in sys.modules)


def test_a_parser_that_dies_is_an_import_error_with_the_reason(tmp_path, parse_mode):
    folder = tmp_path / "dags"
    write(folder, "exits.py", "import os\nfrom crossdock import DAG\nos._exit(5)\n")
    write(folder, "killed.py", "import os, signal\nfrom crossdock import DAG\nos.kill(os.getpid(), signal.SIGKILL)\n")
    write(folder, "fine.py", GOOD.format(id="fine"))
    result = parse_dag_folder(folder, timeout=10)
    assert result.dag_ids == ["fine"]
    assert "exited with code 5 without a result" in result.import_errors[str(folder / "exits.py")]
    assert "killed by signal SIGKILL" in result.import_errors[str(folder / "killed.py")]


def test_duplicate_dag_id_is_an_error_of_the_second_file(tmp_path, parse_mode):
    folder = tmp_path / "dags"
    write(folder, "first.py", GOOD.format(id="shared"))
    write(folder, "second.py", GOOD.format(id="shared") + "other = DAG('own')\n")
    result = parse_dag_folder(folder, timeout=10)
    assert sorted(result.dag_ids) == ["own", "shared"]
    shared = next(dag for dag in result.dags if dag["dag_id"] == "shared")
    assert shared["fileloc"] == str(folder / "first.py")
    error = result.import_errors[str(folder / "second.py")]
    assert "'shared' is already defined in" in error and str(folder / "first.py") in error
    assert str(folder / "first.py") not in result.import_errors


def test_cycle_and_syntax_errors_are_reported_per_file(tmp_path, parse_mode):
    folder = tmp_path / "dags"
    folder.mkdir()
    shutil.copy(FIXTURES / "cycle.py", folder / "cycle.py")
    write(folder, "syntax.py", "from crossdock import DAG\nwith DAG('s') as dag:\n    x = = 1\n")
    result = parse_dag_folder(folder, timeout=10)
    assert result.dags == []
    assert "DagCycleError" in result.import_errors[str(folder / "cycle.py")]
    assert "SyntaxError" in result.import_errors[str(folder / "syntax.py")]
    assert "line 3" in result.import_errors[str(folder / "syntax.py")]


def test_parse_dag_file_parses_one_file_and_times_out():
    result = parse_dag_file(FIXTURES / "two_dags.py", timeout=10)
    assert sorted(result.dag_ids) == ["anonymous_dag", "named_dag"]
    assert result.files == [str(FIXTURES / "two_dags.py")] and not result.complete
    hung = parse_dag_file(FIXTURES / "hangs.py", timeout=1)
    assert hung.dags == [] and hung.import_errors == {str(FIXTURES / "hangs.py"): "timed out after 1 s"}


def test_default_folder_and_timeout_come_from_the_configuration(tmp_path, monkeypatch):
    folder = tmp_path / "configured"
    write(folder, "conf.py", GOOD.format(id="configured"))
    shutil.copy(FIXTURES / "hangs.py", folder / "hangs.py")
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(folder))
    monkeypatch.setenv("CROSSDOCK__CORE__DAGBAG_IMPORT_TIMEOUT", "1.5")
    conf.reload()
    result = parse_dag_folder()
    assert result.dag_ids == ["configured"]
    assert result.import_errors[str(folder / "hangs.py")] == "timed out after 1.5 s"
    assert result.dags[0]["relative_fileloc"] == "conf.py"


def test_empty_folder_parses_to_nothing(tmp_path):
    result = parse_dag_folder(tmp_path, timeout=5)
    assert (result.dags, result.import_errors, result.files) == ([], {}, [])


def test_example_dags_parse_and_have_the_documented_shape(tmp_path):
    result = parse_dag_folder(tmp_path, timeout=30, include_examples=True)
    assert result.import_errors == {}
    dags = {dag["dag_id"]: dag for dag in result.dags}
    assert set(dags) == {"hybrid_execution", "example_bash_python", "example_fan_out", "taskflow_values"}
    assert all(os.path.dirname(dag["fileloc"]) == EXAMPLE_DAGS_FOLDER for dag in dags.values())

    hybrid = dags["hybrid_execution"]
    assert hybrid["schedule"] is None
    tasks = hybrid["tasks"]
    assert {name: task["queue"] for name, task in tasks.items()} == {
        "kubernetes_task": "kubernetes", "celery_task": "default", "high_memory_task": "high_memory"}
    assert sorted(tasks["kubernetes_task"]["downstream"]) == ["celery_task", "high_memory_task"]
    container = tasks["kubernetes_task"]["executor_config"]["pod_override"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "64Mi"},
                                      "limits": {"memory": "256Mi"}}

    etl = dags["example_bash_python"]["tasks"]
    assert etl["load"]["upstream"] == ["flaky_transform", "transform_a"]
    assert etl["flaky_transform"]["retries"] == 1

    fan = dags["example_fan_out"]["tasks"]
    assert len(fan) == 21 and len(fan["join"]["upstream"]) == 20

    # TaskFlow arguments became edges; the pod step is on the kubernetes queue
    values = dags["taskflow_values"]["tasks"]
    assert values["transform"]["upstream"] == ["extract"] and values["load"]["upstream"] == ["transform"]
    assert values["report"]["upstream"] == ["extract"] and values["load"]["queue"] == "kubernetes"


def test_file_names_with_spaces_tabs_and_unicode_are_parsed(tmp_path, parse_mode):
    folder = tmp_path / "dags"
    path = write(folder, "odd\tname ü.py", GOOD.format(id="odd"))
    result = parse_dag_folder(folder, timeout=10)
    assert result.dag_ids == ["odd"] and result.dags[0]["fileloc"] == str(path)
