"""Loading DAG files: finding them, importing them, and the errors a user reads."""

import os
import sys
import textwrap
from pathlib import Path

import pytest

from crossdock.configuration import conf
from crossdock.dag import DagFileError, DagNotFound
from crossdock.dag.loader import find_dag_file_paths, get_dag, load_dags_from_file

FIXTURES = Path(__file__).parent / "dag_files"


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def test_dags_are_found_in_globals_and_in_unnamed_with_blocks():
    dags = load_dags_from_file(FIXTURES / "two_dags.py")
    assert sorted(dags) == ["anonymous_dag", "named_dag"]
    assert dags["anonymous_dag"].task_ids == ["one", "two"]
    assert all(dag.fileloc == str(FIXTURES / "two_dags.py") for dag in dags.values())


def test_syntax_error_reports_the_line(tmp_path):
    path = write(tmp_path, "broken.py", """\
        from crossdock import DAG
        with DAG('s') as dag:
            x = = 1
        """)
    with pytest.raises(DagFileError) as info:
        load_dags_from_file(path)
    assert info.value.path == str(path)
    assert "SyntaxError" in info.value.message
    assert "line 3" in info.value.message and "x = = 1" in info.value.message


def test_exception_at_import_reports_type_message_and_the_users_line():
    path = FIXTURES / "raises_at_import.py"
    with pytest.raises(DagFileError) as info:
        load_dags_from_file(path)
    message = info.value.message
    assert message.startswith("RuntimeError: settings service unreachable")
    assert f'File "{path}", line 9, in load_settings' in message
    assert 'raise RuntimeError("settings service unreachable")' in message
    assert str(path) in str(info.value)


def test_sys_exit_in_a_dag_file_is_an_import_error_not_an_exit(tmp_path):
    path = write(tmp_path, "exits.py", "import sys\nfrom crossdock import DAG\nsys.exit(3)\n")
    with pytest.raises(DagFileError, match="SystemExit: 3"):
        load_dags_from_file(path)


def test_cycle_is_an_import_error_naming_dag_and_tasks():
    with pytest.raises(DagFileError) as info:
        load_dags_from_file(FIXTURES / "cycle.py")
    assert "DagCycleError" in info.value.message
    assert "'circular'" in info.value.message and "b >> a >> b" in info.value.message
    assert "line 9" in info.value.message


def test_bad_cron_is_an_import_error(tmp_path):
    path = write(tmp_path, "cron.py", "from crossdock import DAG\ndag = DAG('bad_cron', schedule='every tuesday-ish')\n")
    with pytest.raises(DagFileError, match="'bad_cron'.*'every tuesday-ish'"):
        load_dags_from_file(path)


def test_scheduled_dag_without_start_date_is_an_import_error(tmp_path):
    path = write(tmp_path, "nostart.py", "from crossdock import DAG\ndag = DAG('nostart', schedule='@daily')\n")
    with pytest.raises(DagFileError, match="'nostart'.*start_date"):
        load_dags_from_file(path)


def test_file_without_dags_loads_as_empty(tmp_path):
    path = write(tmp_path, "utilities.py", "# crossdock dag utilities\nVALUE = 1\n")
    assert load_dags_from_file(path) == {}


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DagFileError, match="cannot read the file"):
        load_dags_from_file(tmp_path / "nope.py")


def test_same_basename_in_two_folders_does_not_clash(tmp_path):
    body = "from crossdock import DAG, BashOperator\nwith DAG('{id}') as dag:\n    BashOperator('t', 'true')\n"
    first = write(tmp_path / "a", "pipeline.py", body.format(id="from_a"))
    second = write(tmp_path / "b", "pipeline.py", body.format(id="from_b"))
    assert list(load_dags_from_file(first)) == ["from_a"]
    assert list(load_dags_from_file(second)) == ["from_b"]
    assert list(load_dags_from_file(first)) == ["from_a"]


def test_same_dag_id_twice_in_one_file_is_an_error(tmp_path):
    path = write(tmp_path, "twice.py", "from crossdock import DAG\na = DAG('twin')\nb = DAG('twin')\n")
    with pytest.raises(DagFileError, match="'twin' is defined twice"):
        load_dags_from_file(path)


def test_a_dag_left_open_does_not_capture_the_next_files_tasks(tmp_path):
    leaky = write(tmp_path, "leaky.py", "from crossdock import DAG\nDAG('leaky').__enter__()\n")
    clean = write(tmp_path, "clean.py", "from crossdock import BashOperator, DAG\n"
                                        "op = BashOperator('loose', 'true')\ndag = DAG('clean')\n")
    load_dags_from_file(leaky)
    dags = load_dags_from_file(clean)
    assert dags["clean"].task_ids == []


def test_dag_file_can_import_shared_modules_from_the_dags_folder(dags_folder):
    write(dags_folder, "shared_settings.py", "QUEUE = 'from_shared_module'\n")
    path = write(dags_folder, "uses_shared_module.py", """\
        from crossdock import DAG, BashOperator
        from shared_settings import QUEUE
        with DAG('shared') as dag:
            BashOperator('t', 'true', queue=QUEUE)
        """)
    try:
        assert load_dags_from_file(path)["shared"].get_task("t").queue == "from_shared_module"
    finally:
        sys.modules.pop("shared_settings", None)


def test_find_skips_files_without_both_words_hidden_files_and_ignored_paths(tmp_path):
    good = write(tmp_path, "good.py", "from crossdock import DAG\n")
    write(tmp_path, "no_keyword.py", "print('hello')\n")
    write(tmp_path, "only_dag.py", "# a dag\n")
    write(tmp_path, ".hidden.py", "from crossdock import DAG\n")
    write(tmp_path, "notes.txt", "crossdock dag\n")
    nested = write(tmp_path, "team/nested.py", "from crossdock import DAG\n")
    write(tmp_path, "team/scratch/wip.py", "from crossdock import DAG\n")
    write(tmp_path, "team/old_pipeline.py", "from crossdock import DAG\n")
    write(tmp_path, "vendor/lib.py", "from crossdock import DAG\n")
    write(tmp_path, ".crossdockignore", "# vendored code\n^vendor/\n[invalid\n")
    write(tmp_path, "team/.crossdockignore", "scratch\nold_.*\\.py$\n")
    assert find_dag_file_paths(tmp_path) == sorted([str(good), str(nested)])
    assert find_dag_file_paths(tmp_path / "missing") == []
    assert find_dag_file_paths(good) == [str(good)]


def test_get_dag_from_a_file_and_from_the_dags_folder_marker(dags_folder):
    write(dags_folder, "other.py", "from crossdock import DAG\ndag = DAG('other')\n")
    write(dags_folder, "team/target.py", "from crossdock import DAG, BashOperator\n"
                                         "with DAG('target') as dag:\n    BashOperator('t', 'true')\n")
    assert get_dag("target", subdir="DAGS_FOLDER/team/target.py").task_ids == ["t"]
    assert get_dag("target", subdir="DAGS_FOLDER").dag_id == "target"
    assert get_dag("target").fileloc == str(dags_folder / "team" / "target.py")
    assert get_dag("target", subdir=str(dags_folder / "team")).dag_id == "target"


def test_get_dag_skips_broken_files_while_searching_and_names_them_when_not_found(dags_folder):
    write(dags_folder, "broken.py", "from crossdock import DAG\nraise ValueError('nope')\n")
    write(dags_folder, "fine.py", "from crossdock import DAG\ndag = DAG('fine')\n")
    assert get_dag("fine").dag_id == "fine"
    with pytest.raises(DagNotFound) as info:
        get_dag("ghost")
    message = str(info.value)
    assert "'ghost'" in message and str(dags_folder) in message
    assert "broken.py: ValueError: nope" in message


def test_get_dag_from_a_file_that_lacks_it_names_what_it_defines(dags_folder):
    path = write(dags_folder, "fine.py", "from crossdock import DAG\ndag = DAG('fine')\n")
    with pytest.raises(DagNotFound, match=r"'ghost' is not defined in .*fine\.py \(it defines: fine\)"):
        get_dag("ghost", subdir=str(path))


def test_get_dag_of_a_broken_file_raises_the_file_error(dags_folder):
    write(dags_folder, "broken.py", "from crossdock import DAG\nraise ValueError('nope')\n")
    with pytest.raises(DagFileError, match="ValueError: nope"):
        get_dag("anything", subdir="DAGS_FOLDER/broken.py")


def test_get_dag_with_a_missing_folder(tmp_path):
    with pytest.raises(DagNotFound, match="does not exist"):
        get_dag("x", subdir=str(tmp_path / "nowhere"))


def test_example_dags_are_found_when_load_examples_is_on(dags_folder, monkeypatch):
    with pytest.raises(DagNotFound):
        get_dag("hybrid_execution")
    monkeypatch.setenv("CROSSDOCK__CORE__LOAD_EXAMPLES", "true")
    conf.reload()
    dag = get_dag("hybrid_execution")
    assert os.path.basename(dag.fileloc) == "example_hybrid_execution.py"
