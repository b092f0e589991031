"""Parse results in the metadata database: DAG rows, serialized DAGs, import errors."""

import textwrap
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from crossdock.dag.dag_store import load_serialized_dags, sync_parse_result_to_db
from crossdock.dag.processor import parse_dag_file, parse_dag_folder
from crossdock.database import create_session
from crossdock.models import DagImportError, DagModel, SerializedDagModel

DAILY = """\
    from datetime import datetime
    from crossdock import DAG, BashOperator
    with DAG('{id}', schedule='@daily', start_date=datetime(2024, 1, 1), catchup=True,
             max_active_runs=3, tags=['nightly']) as dag:
        BashOperator('t', 'true', retries={retries})
    """


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def sync(folder: Path) -> list[str]:
    result = parse_dag_folder(folder, timeout=10)
    with create_session() as session:
        return sync_parse_result_to_db(result, session)


def rows(model):
    with create_session() as session:
        return {getattr(row, "dag_id", None) or row.filename: row for row in session.scalars(select(model))}


def test_first_sync_creates_dag_and_serialized_rows(backend, dags_folder):
    write(dags_folder, "nightly.py", DAILY.format(id="nightly", retries=1))
    write(dags_folder, "manual.py", "from crossdock import DAG\ndag = DAG('manual')\n")
    assert sync(dags_folder) == ["manual", "nightly"]

    dag = rows(DagModel)["nightly"]
    assert dag.fileloc == str(dags_folder / "nightly.py")
    assert (dag.schedule, dag.catchup, dag.max_active_runs, dag.tags) == ("@daily", True, 3, ["nightly"])
    assert dag.start_date == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert dag.is_active and not dag.is_paused and dag.last_parsed is not None
    assert rows(DagModel)["manual"].schedule is None

    with create_session() as session:
        serialized = load_serialized_dags(session)
    assert serialized["nightly"].tasks["t"].retries == 1
    assert serialized["nightly"].relative_fileloc == "nightly.py"


def test_serialized_dag_is_rewritten_only_when_it_changed(backend, dags_folder):
    path = write(dags_folder, "nightly.py", DAILY.format(id="nightly", retries=1))
    write(dags_folder, "other.py", DAILY.format(id="other", retries=0))
    sync(dags_folder)
    before = rows(SerializedDagModel)
    parsed_before = rows(DagModel)["nightly"].last_parsed

    assert sync(dags_folder) == []
    after = rows(SerializedDagModel)
    assert after["nightly"].last_updated == before["nightly"].last_updated
    assert rows(DagModel)["nightly"].last_parsed >= parsed_before

    path.write_text(textwrap.dedent(DAILY.format(id="nightly", retries=4)))
    assert sync(dags_folder) == ["nightly"]
    changed = rows(SerializedDagModel)
    assert changed["nightly"].dag_hash != before["nightly"].dag_hash
    assert changed["nightly"].data["tasks"]["t"]["retries"] == 4
    assert changed["other"].dag_hash == before["other"].dag_hash


def test_pause_state_set_by_users_survives_a_resync(backend, dags_folder):
    write(dags_folder, "nightly.py", DAILY.format(id="nightly", retries=1))
    sync(dags_folder)
    with create_session() as session:
        session.get(DagModel, "nightly").is_paused = True
    sync(dags_folder)
    assert rows(DagModel)["nightly"].is_paused


def test_import_error_is_recorded_and_cleared_once_the_file_is_fixed(backend, dags_folder):
    path = write(dags_folder, "fragile.py", "from crossdock import DAG\nraise ValueError('typo in config')\n")
    assert sync(dags_folder) == []
    errors = rows(DagImportError)
    assert list(errors) == [str(path)]
    assert "ValueError: typo in config" in errors[str(path)].stacktrace

    write(dags_folder, "fragile.py", DAILY.format(id="fragile", retries=0))
    assert sync(dags_folder) == ["fragile"]
    assert rows(DagImportError) == {}
    assert rows(DagModel)["fragile"].is_active


def test_a_file_that_breaks_keeps_its_last_good_dag_active(backend, dags_folder):
    path = write(dags_folder, "nightly.py", DAILY.format(id="nightly", retries=1))
    sync(dags_folder)
    path.write_text("from crossdock import DAG\nwith DAG('nightly') as dag:\n    x = = 1\n")
    assert sync(dags_folder) == []
    assert rows(DagModel)["nightly"].is_active
    assert rows(SerializedDagModel)["nightly"].data["tasks"]["t"]["retries"] == 1
    assert "SyntaxError" in rows(DagImportError)[str(path)].stacktrace


def test_dags_whose_file_vanished_or_stopped_defining_them_become_inactive(backend, dags_folder):
    gone = write(dags_folder, "gone.py", DAILY.format(id="gone", retries=0))
    write(dags_folder, "pair.py", "from crossdock import DAG\nkeep = DAG('keep')\ndrop = DAG('drop')\n")
    broken = write(dags_folder, "broken.py", "from crossdock import DAG\nraise ValueError('x')\n")
    sync(dags_folder)
    gone.unlink()
    broken.unlink()
    write(dags_folder, "pair.py", "from crossdock import DAG\nkeep = DAG('keep')\n")
    sync(dags_folder)
    state = {dag_id: row.is_active for dag_id, row in rows(DagModel).items()}
    assert state == {"gone": False, "keep": True, "drop": False}
    assert rows(DagImportError) == {}  # the vanished broken file's error went with it

    write(dags_folder, "gone.py", DAILY.format(id="gone", retries=0))
    sync(dags_folder)
    assert rows(DagModel)["gone"].is_active


def test_a_single_file_result_touches_only_that_file(backend, dags_folder):
    write(dags_folder, "a.py", DAILY.format(id="a", retries=0))
    broken = write(dags_folder, "broken.py", "from crossdock import DAG\nraise ValueError('x')\n")
    sync(dags_folder)
    path = write(dags_folder, "b.py", DAILY.format(id="b", retries=0))
    with create_session() as session:
        assert sync_parse_result_to_db(parse_dag_file(path, timeout=10), session) == ["b"]
    assert {dag_id for dag_id, row in rows(DagModel).items() if row.is_active} == {"a", "b"}
    assert list(rows(DagImportError)) == [str(broken)]


def test_a_missing_dags_folder_does_not_deactivate_known_dags(backend, dags_folder):
    """An unmounted volume looks like an empty folder; it must not switch every DAG off."""
    write(dags_folder, "nightly.py", DAILY.format(id="nightly", retries=1))
    sync(dags_folder)
    for path in dags_folder.iterdir():
        path.unlink()
    dags_folder.rmdir()
    result = parse_dag_folder(dags_folder, timeout=10)
    assert not result.complete
    with create_session() as session:
        sync_parse_result_to_db(result, session)
    assert rows(DagModel)["nightly"].is_active
