"""The serverless default: filesystem broker and SQLite result backend, real worker processes.

This is what ``crossdock standalone`` and the demo run on a machine with no servers.
"""

from __future__ import annotations

import textwrap

import pytest

from crossdock.configuration import conf
from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_worker import start_embedded_workers
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.runner.command import task_run_command
from crossdock.state import TaskInstanceState as S
from executor_doubles import FakeTI


@pytest.fixture(autouse=True)
def dags_folder_is_tmp_path(tmp_path, monkeypatch):
    """The DAG files these tests write live in tmp_path; workers run only DAG files in the DAGs folder."""
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(tmp_path))
    conf.reload()


def test_embedded_workers_run_tasks_with_no_server(tmp_path):
    dag = tmp_path / "embedded.py"
    dag.write_text(textwrap.dedent("""
        from crossdock import DAG, PythonOperator

        def ok():
            print("embedded ok")

        def bad():
            raise KeyError("missing")

        with DAG("embedded") as dag:
            for i in range(4):
                PythonOperator(f"ok{i}", python_callable=ok)
            PythonOperator("bad", python_callable=bad)
    """))
    keys = [TaskInstanceKey("embedded", task_id, "r1", 1) for task_id in ("ok0", "ok1", "ok2", "ok3", "bad")]
    workers = start_embedded_workers(queues=["default"], concurrency=2, count=2)
    try:
        executor = CeleryExecutor()
        executor.start()
        for key in keys:
            executor.queue_command(FakeTI(key), task_run_command(key, subdir=str(dag)), queue="default")
        final = {}
        for _ in range(3000):
            executor.heartbeat()
            for key, (state, info) in executor.get_event_buffer().items():
                if state in (S.SUCCESS, S.FAILED):
                    final[key] = (state, info)
            if len(final) == len(keys):
                break
            executor.wait_for_events(0.02)
        assert {key.task_id: state for key, (state, _) in final.items()} == {
            "ok0": S.SUCCESS, "ok1": S.SUCCESS, "ok2": S.SUCCESS, "ok3": S.SUCCESS, "bad": S.FAILED}
        assert "KeyError: 'missing'" in final[keys[-1]][1]
        assert workers.alive()
    finally:
        workers.stop(timeout=0)  # no warm shutdown: its tries are over (process_helpers.killed_when_done)
    assert not workers.alive()
