"""What task groups and mapping cost: 1,000 tasks in 50 groups of 20, and one task mapped over
a 1,000-element upstream list, beside 1,000 plain tasks, in one run.

Prints, for each DAG on the LocalExecutor and SQLite: parse time (the DAG file imported and
serialized in a child, as the DAG processor does), trigger → run success wall time and
tasks/s, and the scheduler process's peak RSS growth.

    python bench/bench_task_groups.py [--tasks 1000] [--groups 50]

(The mapped DAG has one more task instance: the upstream that pushes the list.)
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scheduler import peak_rss_mib, setup_home  # noqa: E402
from bench_xcom import run_dag  # noqa: E402


def write_dags(home, *, tasks: int, groups: int) -> None:
    per_group = tasks // groups
    (home / "dags" / "plain.py").write_text(textwrap.dedent(f"""
        from crossdock import DAG, PythonOperator

        def noop():
            pass

        with DAG("plain", max_active_tasks=64):
            for i in range({tasks}):
                PythonOperator(task_id=f"t{{i:04d}}", python_callable=noop)
    """))
    (home / "dags" / "mapped.py").write_text(textwrap.dedent(f"""
        from crossdock import DAG, task

        with DAG("mapped", max_active_tasks=64):
            @task
            def elements():
                return list(range({tasks}))

            @task
            def noop(x):
                pass

            noop.expand(x=elements())
    """))
    (home / "dags" / "grouped.py").write_text(textwrap.dedent(f"""
        from crossdock import DAG, PythonOperator, TaskGroup

        def noop():
            pass

        with DAG("grouped", max_active_tasks=64):
            previous = None
            for g in range({groups}):
                with TaskGroup(f"g{{g:02d}}") as group:
                    for i in range({per_group}):
                        PythonOperator(task_id=f"t{{i:02d}}", python_callable=noop)
    """))


def parse_seconds(path) -> float:
    from crossdock.dag.processor import parse_dag_folder

    started = time.perf_counter()
    result = parse_dag_folder(str(path))
    assert not result.import_errors, result.import_errors
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=50)
    args = parser.parse_args()
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.database import create_session
    from crossdock.executors.local_executor import LocalExecutor

    home = setup_home("sqlite")
    write_dags(home, tasks=args.tasks, groups=args.groups)
    with create_session() as session:
        sync_parse_result_to_db(parse_dag_folder(str(home / "dags")), session)
    print(f"LocalExecutor, SQLite: {args.tasks} tasks plain, in {args.groups} task groups, and mapped over a list")
    for dag_id in ("plain", "grouped", "mapped"):
        parse = parse_seconds(home / "dags" / f"{dag_id}.py")
        before = peak_rss_mib()
        wall, tis = run_dag(dag_id, LocalExecutor(parallelism=16))
        print(f"  {dag_id:8s} parse {parse * 1000:.0f} ms; trigger -> success {wall:.2f} s "
              f"({len(tis) / wall:.0f} tasks/s); scheduler peak RSS +{peak_rss_mib() - before:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
