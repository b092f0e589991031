"""A warm parent imports a DAG file once; the tries it forks inherit the loaded DAG.

Every DAG file here appends a line (the importing process's pid) to a counter file at
module level, so the tests count real imports and see in which process they ran.
The zygote and the Celery worker's ``_run`` are the real ones: no mocks.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from crossdock.configuration import conf
from crossdock.dag import loader
from crossdock.dag.exceptions import DagFileError
from crossdock.executors import celery_app, celery_worker  # noqa: F401 - celery_app declares [celery] settings
from crossdock.runner import dag_warmup
from crossdock.runner.zygote import start_zygote
from crossdock.runner.zygote_client import process_runner

WAIT_LIMIT_SECONDS = 60.0


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch, tmp_path):
    """No cached file or remembered failure leaks into or out of a test."""
    dags = tmp_path / "dags"
    dags.mkdir()
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(dags))
    conf.reload()
    loader.clear_dag_file_cache()
    dag_warmup.forget_failures()
    yield
    loader.clear_dag_file_cache()
    dag_warmup.forget_failures()


def write_dag(path: Path, *, body: str = "", tasks: int = 1, dag_id: str = "cached") -> Path:
    """A DAG file that records each import of itself in ``<name>.imports``."""
    counter = path.with_suffix(".imports")
    path.write_text(textwrap.dedent(f"""
        import os
        from crossdock import DAG, PythonOperator

        with open({str(counter)!r}, "a") as _handle:
            _handle.write(f"{{os.getpid()}}\\n")

        OUT = {str(path.parent)!r}
        SEEN = []

        def noop():
            pass

        def remember():
            SEEN.append(os.getpid())
            with open(os.path.join(OUT, "seen"), "a") as handle:
                handle.write(f"{{len(SEEN)}}\\n")
    """) + textwrap.dedent(body) + textwrap.dedent(f"""
        with DAG({dag_id!r}) as dag:
            for i in range({tasks}):
                PythonOperator(task_id=f"t{{i}}", python_callable=noop)
            PythonOperator(task_id="remember", python_callable=remember)
    """))
    return path


def imports(path: Path) -> list[int]:
    counter = path.with_suffix(".imports")
    return [int(line) for line in counter.read_text().split()] if counter.exists() else []


def command(path: Path, task_id: str = "t0", *, run: str = "r1", dag_id: str = "cached") -> list[str]:
    return ["crossdock", "tasks", "run", dag_id, task_id, run, "--try-number", "1", "--subdir", str(path)]


def rewrite(path: Path, old: str, new: str) -> None:
    """Change the file so its version differs even within one mtime tick (size changes)."""
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


# -- the cache in one process -------------------------------------------------------------
def test_an_unchanged_file_comes_from_the_cache_and_a_changed_one_is_imported_again(tmp_path):
    path = write_dag(tmp_path / "dags" / "one.py")
    dags = loader.cache_dag_file(path)
    assert loader.get_dag("cached", subdir=str(path)) is dags["cached"]
    assert loader.cache_dag_file(path) is dags
    assert len(imports(path)) == 1

    rewrite(path, "range(1)", "range(3)")
    fresh = loader.get_dag("cached", subdir=str(path))
    assert fresh is not dags["cached"]
    assert "t2" in fresh.task_ids
    assert len(imports(path)) == 2
    # The stale entry is gone; a warm parent imports the new version once more and keeps it.
    assert loader.cached_dag_files() == []
    assert "t2" in loader.cache_dag_file(path)["cached"].task_ids
    assert loader.get_dag("cached", subdir=str(path)) is loader.cache_dag_file(path)["cached"]
    assert len(imports(path)) == 3


def test_touching_a_file_makes_its_entry_stale(tmp_path):
    path = write_dag(tmp_path / "dags" / "touched.py")
    loader.cache_dag_file(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert loader.cached_dags(path) is None
    loader.get_dag("cached", subdir=str(path))
    assert len(imports(path)) == 2


def test_get_dag_alone_never_fills_the_cache(tmp_path):
    """Only warm parents share DAG objects between callers; a plain caller gets a new import."""
    path = write_dag(tmp_path / "dags" / "plain.py")
    first = loader.get_dag("cached", subdir=str(path))
    second = loader.get_dag("cached", subdir=str(path))
    assert first is not second
    assert len(imports(path)) == 2
    assert loader.cached_dag_files() == []


def test_a_changed_helper_module_next_to_the_dags_makes_the_entry_stale(tmp_path):
    dags = tmp_path / "dags"
    helper = dags / "cache_helper_queue.py"
    helper.write_text('QUEUE = "first"\n')
    path = write_dag(dags / "uses_helper.py", body="""
        import cache_helper_queue
    """)
    rewrite(path, 'PythonOperator(task_id="remember", python_callable=remember)',
            'PythonOperator(task_id="remember", python_callable=remember, queue=cache_helper_queue.QUEUE)')
    assert loader.cache_dag_file(path)["cached"].get_task("remember").queue == "first"

    helper.write_text('QUEUE = "second one"\n')
    assert loader.get_dag("cached", subdir=str(path)).get_task("remember").queue == "second one"


def test_the_cache_keeps_only_the_most_recently_used_files(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "DAG_FILE_CACHE_SIZE", 2)
    paths = [write_dag(tmp_path / "dags" / f"lru{i}.py", dag_id=f"lru{i}") for i in range(3)]
    loader.cache_dag_file(paths[0])
    loader.cache_dag_file(paths[1])
    loader.cache_dag_file(paths[0])  # used again: now the most recent
    loader.cache_dag_file(paths[2])
    assert loader.cached_dag_files() == [str(paths[0]), str(paths[2])]
    loader.get_dag("lru1", subdir=str(paths[1]))
    assert len(imports(paths[1])) == 2


def test_a_file_that_fails_to_import_is_not_cached(tmp_path):
    path = write_dag(tmp_path / "dags" / "broken.py", body="""
        raise ValueError("no config for this DAG")
    """)
    with pytest.raises(DagFileError, match="no config for this DAG"):
        loader.cache_dag_file(path)
    assert loader.cached_dag_files() == []


# -- warming, in this process ---------------------------------------------------------
def test_warming_reads_the_dag_file_from_the_command(tmp_path, monkeypatch):
    path = write_dag(tmp_path / "dags" / "warm.py")
    assert dag_warmup.warm_dag_file(["crossdock", "tasks", "run", "cached", "t0", "r1",
                                     "--subdir", "DAGS_FOLDER/warm.py"])
    assert loader.cached_dag_files() == [str(path)]

    assert not dag_warmup.warm_dag_file(["crossdock", "tasks", "run", "cached", "t0", "r1"])  # no file named
    assert not dag_warmup.warm_dag_file(command(tmp_path / "dags"))  # a folder: the child searches it
    assert not dag_warmup.warm_dag_file(["bash", "-c", "true"])
    assert not dag_warmup.warm_dag_file(command(path) + ["--no-such-option"])

    monkeypatch.setenv("CROSSDOCK__CORE__CACHE_DAG_FILES_IN_WORKERS", "false")
    conf.reload()
    loader.clear_dag_file_cache()
    assert not dag_warmup.warm_dag_file(command(path))
    assert loader.cached_dag_files() == []


@pytest.mark.parametrize("statement", ['raise RuntimeError("broken at import")', "raise SystemExit(3)",
                                       "raise KeyboardInterrupt()"])
def test_a_file_that_raises_while_warming_is_swallowed_and_not_retried(tmp_path, statement):
    path = write_dag(tmp_path / "dags" / "raises.py", body=statement)
    assert dag_warmup.warm_dag_file(command(path)) is False
    assert dag_warmup.warm_dag_file(command(path)) is False
    assert len(imports(path)) == 1  # the unchanged broken version is not imported again
    rewrite(path, statement, "pass")
    assert dag_warmup.warm_dag_file(command(path)) is True


def test_a_file_that_hangs_while_warming_times_out_and_the_alarm_is_put_back(tmp_path):
    path = write_dag(tmp_path / "dags" / "hangs.py", body="""
        import time
        time.sleep(60)
    """)
    before = signal.getsignal(signal.SIGALRM)
    assert dag_warmup.warm_dag_file(command(path), timeout=0.3) is False
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert loader.cached_dag_files() == []


# -- forked tries -------------------------------------------------------------------------
def run_in_zygote(zygote, key, cmd) -> tuple:
    """Send one command and return its ("finished", key, exit_code, reason, duration)."""
    zygote.send(("run", key, cmd))
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if zygote.connection.poll(0.2):
            for message in zygote.receive_ready():
                if message[0] == "finished" and message[1] == key:
                    return message
    raise AssertionError(f"{cmd} did not finish within {WAIT_LIMIT_SECONDS}s")


@pytest.fixture
def zygote():
    handle = start_zygote()
    yield handle
    try:
        handle.send(("terminate", 1.0))
    except OSError:
        pass
    if not handle.reap(block=False):
        deadline = time.monotonic() + 10
        while not handle.reap() and time.monotonic() < deadline:
            time.sleep(0.05)
        handle.kill()
    handle.close()


def test_tries_forked_by_a_warm_zygote_do_not_import_the_dag_file_again(tmp_path, zygote):
    path = write_dag(tmp_path / "dags" / "forked.py", tasks=3)
    results = [run_in_zygote(zygote, i, command(path, f"t{i}")) for i in range(3)]
    assert [result[2] for result in results] == [0, 0, 0]
    assert imports(path) == [zygote.pid]


def test_a_try_never_sees_what_an_earlier_try_changed(tmp_path, zygote):
    path = write_dag(tmp_path / "dags" / "isolated.py")
    for run in ("r1", "r2", "r3"):
        assert run_in_zygote(zygote, run, command(path, "remember", run=run))[2] == 0
    assert (tmp_path / "dags" / "seen").read_text().split() == ["1", "1", "1"]
    assert imports(path) == [zygote.pid]


def test_a_changed_file_is_imported_again_by_the_zygote(tmp_path, zygote):
    path = write_dag(tmp_path / "dags" / "changes.py")
    assert run_in_zygote(zygote, 1, command(path, "t0"))[2] == 0
    rewrite(path, "range(1)", "range(2)")
    assert run_in_zygote(zygote, 2, command(path, "t1"))[2] == 0
    assert imports(path) == [zygote.pid, zygote.pid]


def test_with_the_cache_off_every_try_imports_the_file_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CORE__CACHE_DAG_FILES_IN_WORKERS", "false")
    conf.reload()
    path = write_dag(tmp_path / "dags" / "uncached.py")
    handle = start_zygote()
    try:
        assert run_in_zygote(handle, 1, command(path))[2] == 0
        assert run_in_zygote(handle, 2, command(path))[2] == 0
        pids = imports(path)
        assert len(pids) == 2 and handle.pid not in pids
    finally:
        handle.send(("stop",))
        handle.reap(block=True)
        handle.close()


def failure_reason_with_cache(path: Path, *, enabled: bool, monkeypatch, key) -> tuple:
    monkeypatch.setenv("CROSSDOCK__CORE__CACHE_DAG_FILES_IN_WORKERS", str(enabled).lower())
    conf.reload()
    handle = start_zygote()
    try:
        finished = run_in_zygote(handle, key, command(path))
        handle.send(("stop",))
        handle.reap(block=True)
        return finished[2], finished[3]
    finally:
        handle.kill()
        handle.close()


def test_a_broken_file_fails_the_try_with_the_same_reason_as_without_the_cache(tmp_path, monkeypatch, zygote):
    path = write_dag(tmp_path / "dags" / "broken_forked.py", body="""
        raise RuntimeError("database password missing")
    """)
    warmed = run_in_zygote(zygote, "a", command(path))
    uncached = failure_reason_with_cache(path, enabled=False, monkeypatch=monkeypatch, key="b")
    assert (warmed[2], warmed[3]) == uncached
    assert warmed[2] == 2 and "database password missing" in warmed[3]
    # The zygote is unharmed and still runs a good file's tries.
    good = write_dag(tmp_path / "dags" / "good.py")
    assert run_in_zygote(zygote, "c", command(good))[2] == 0


def test_a_hanging_file_times_out_in_the_zygote_once_and_the_try_reports_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__CORE__DAGBAG_IMPORT_TIMEOUT", "0.5")
    conf.reload()
    path = write_dag(tmp_path / "dags" / "hangs_forked.py", body="""
        import time
        time.sleep(60)
    """)
    handle = start_zygote()
    try:
        first = run_in_zygote(handle, 1, command(path))
        assert first[2] == 1
        assert "took longer than 0.5s ([core] dagbag_import_timeout)" in first[3]
        assert imports(path)[0] == handle.pid and len(imports(path)) == 2  # the zygote, then the child
        second = run_in_zygote(handle, 2, command(path))
        assert second[3] == first[3]
        assert len(imports(path)) == 3  # the unchanged file is not warmed again
        good = write_dag(tmp_path / "dags" / "still_good.py")
        assert run_in_zygote(handle, 3, command(good))[2] == 0
    finally:
        handle.send(("stop",))
        handle.reap(block=True)
        handle.close()


def test_a_celery_pool_process_warms_the_file_in_its_zygote_before_forking(tmp_path):
    """``_run`` is what a pool process calls per message; here this process is the pool process.

    The file is imported once, by the lean zygote the pool process owns, never by the
    pool process itself nor by each try."""
    path = write_dag(tmp_path / "dags" / "celery_dag.py", tasks=2)
    results = [celery_worker._run(command(path, task_id), key=f"celery-id-{index}")
               for index, task_id in enumerate(("t0", "t1", "remember", "remember"))]
    assert [result.exit_code for result in results] == [0, 0, 0, 0]
    zygote_pid = process_runner().zygote_pid
    assert zygote_pid not in (None, os.getpid())
    assert imports(path) == [zygote_pid]
    assert (tmp_path / "dags" / "seen").read_text().split() == ["1", "1"]
    assert loader.cached_dags(str(path)) is None  # nothing of the DAG's was imported here


def test_a_celery_pool_process_survives_a_broken_file(tmp_path):
    path = write_dag(tmp_path / "dags" / "celery_broken.py", body="""
        raise ImportError("no module named 'missing_lib'")
    """)
    result = celery_worker._run(command(path), key="broken")
    assert result.exit_code == 2
    assert "missing_lib" in result.reason
    good = write_dag(tmp_path / "dags" / "celery_good.py")
    assert celery_worker._run(command(good), key="good").exit_code == 0


def test_a_file_that_kills_the_zygote_while_warming_is_left_to_the_tries_of_its_successor(tmp_path):
    path = write_dag(tmp_path / "dags" / "exits.py", body="""
        os._exit(3)
    """)
    first = start_zygote()
    try:
        first.send(("run", 1, command(path)))
        assert first.reap(block=True)  # the import ended the zygote itself
    finally:
        first.close()
    assert imports(path) == [first.pid]

    successor = start_zygote()
    try:
        finished = run_in_zygote(successor, 2, command(path))
        assert finished[2] == 3  # the try's own process ended the same way
        assert len(imports(path)) == 2 and successor.pid not in imports(path)
        good = write_dag(tmp_path / "dags" / "after_exit.py")
        assert run_in_zygote(successor, 3, command(good))[2] == 0
    finally:
        successor.send(("stop",))
        successor.reap(block=True)
        successor.close()
