"""What passing values costs: TaskFlow chains with and without values, and a 1,000-way fan-in.

Prints, for the LocalExecutor and for Celery on a private Redis (embedded worker):

(a) a chain of N no-op TaskFlow tasks, each passing an int to the next, beside the same
    chain with no values (the baseline, same run): wall time per link and the median /
    p95 gap from an upstream's end to its downstream's start; the difference per link is
    what a value costs (its push, the result channel, the store, the handover);
(b) (LocalExecutor) a fan-in of M upstreams, each returning an int, into one task that
    takes all M values as a list argument, beside the same DAG without values: wall time,
    the fan-in task's command size, and the scheduler process's peak RSS growth.

    python bench/bench_xcom.py [--chain 100] [--fan-in 1000] [--rounds 5] [--no-celery]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import textwrap
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scheduler import peak_rss_mib, percentile, setup_home  # noqa: E402
from bench_scheduler import run_dag as scheduler_run_dag  # noqa: E402
from bench_services import own_redis_server, port_open  # noqa: E402


def write_dags(home, *, chain: int, fan_in: int, queue: str) -> None:
    (home / "dags" / "bench_values.py").write_text(textwrap.dedent(f"""
        from crossdock import DAG, PythonOperator, task

        def noop():
            pass

        with DAG("chain_values", max_active_tasks=64, default_args={{"queue": "{queue}"}}):
            @task
            def first() -> int:
                return 0

            @task
            def step(value: int) -> int:
                return value + 1

            value = first()
            for i in range({chain} - 1):
                value = step.override(task_id=f"c{{i + 1:03d}}")(value)

        with DAG("chain_plain", max_active_tasks=64, default_args={{"queue": "{queue}"}}):
            previous = PythonOperator(task_id="first", python_callable=noop)
            for i in range({chain} - 1):
                current = PythonOperator(task_id=f"c{{i + 1:03d}}", python_callable=noop)
                previous >> current
                previous = current

        with DAG("fan_in_values", max_active_tasks=64, default_args={{"queue": "{queue}"}}):
            @task
            def produce(i: int) -> int:
                return i

            @task
            def total(values: list) -> int:
                assert len(values) == {fan_in}, len(values)
                return sum(values)

            total([produce.override(task_id=f"u{{i:04d}}")(i) for i in range({fan_in})])

        with DAG("fan_in_plain", max_active_tasks=64, default_args={{"queue": "{queue}"}}):
            sink = PythonOperator(task_id="total", python_callable=noop)
            for i in range({fan_in}):
                PythonOperator(task_id=f"u{{i:04d}}", python_callable=noop) >> sink
    """))


def parse_into_db(home) -> None:
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.database import create_session

    result = parse_dag_folder(str(home / "dags"))
    assert not result.import_errors, result.import_errors
    with create_session() as session:
        sync_parse_result_to_db(result, session)


def run_dag(dag_id: str, executor) -> tuple[float, list]:
    """bench_scheduler's run of one DAG, on ``executor``, failing loudly if a task did not succeed."""
    wall, tis = scheduler_run_dag(dag_id, executor)
    failed = [(ti.task_id, ti.failure_reason) for ti in tis if ti.state != "success"]
    assert not failed, failed[:3]
    return wall, tis


def chain_figures(dag_id: str, executor) -> dict:
    wall, tis = run_dag(dag_id, executor)
    ordered = sorted(tis, key=lambda ti: ti.task_id if ti.task_id != "first" else "")
    gaps = [(after.start_date - before.end_date).total_seconds() * 1000
            for before, after in zip(ordered, ordered[1:])]
    return {"per_link_ms": wall * 1000 / len(tis), "p50_ms": statistics.median(gaps),
            "p95_ms": percentile(gaps, 0.95)}


def fan_in_figures(dag_id: str, executor) -> dict:
    rss_before = peak_rss_mib()
    wall, tis = run_dag(dag_id, executor)
    sink = next(ti for ti in tis if ti.task_id == "total")
    return {"wall_s": wall, "rss_growth_mib": peak_rss_mib() - rss_before,
            "sink_wait_ms": (sink.start_date - max(ti.end_date for ti in tis if ti is not sink))
            .total_seconds() * 1000}


def handover_size(fan_in: int) -> int:
    """Characters of the fan-in task's ``--inputs`` word, rebuilt as the scheduler builds it."""
    from crossdock.runner.try_inputs import encode_inputs

    return len(encode_inputs(conf=None, run_type="manual", upstream=[f"u{i:04d}" for i in range(fan_in)],
                             values=[(f"u{i:04d}", -1, "return_value", str(i)) for i in range(fan_in)]))


def chains(make_executor, rounds: int) -> tuple[dict, dict]:
    """The two chains run alternately ``rounds`` times; each figure is the median over rounds
    (this machine's noise between two single runs is larger than what a value costs)."""
    runs: dict[str, list[dict]] = {"chain_plain": [], "chain_values": []}
    for _ in range(rounds):
        for dag_id in runs:
            runs[dag_id].append(chain_figures(dag_id, make_executor()))
    return tuple({key: statistics.median(run[key] for run in runs[dag_id]) for key in runs[dag_id][0]}
                 for dag_id in ("chain_plain", "chain_values"))


def print_chain(label: str, plain: dict, values: dict) -> None:
    added = values["per_link_ms"] - plain["per_link_ms"]
    print(f"  {label}: per link {plain['per_link_ms']:.1f} ms without values -> {values['per_link_ms']:.1f} ms "
          f"with (+{added:.2f} ms); start gap p50 {plain['p50_ms']:.1f} -> {values['p50_ms']:.1f} ms, "
          f"p95 {plain['p95_ms']:.1f} -> {values['p95_ms']:.1f} ms")


def bench_local(args) -> None:
    from crossdock.executors.local_executor import LocalExecutor

    home = setup_home("sqlite")
    write_dags(home, chain=args.chain, fan_in=args.fan_in, queue="default")
    parse_into_db(home)
    print(f"LocalExecutor, SQLite (chain of {args.chain}, fan-in of {args.fan_in})")
    plain, values = chains(lambda: LocalExecutor(parallelism=16), args.rounds)
    print_chain(f"chain (median of {args.rounds} alternating runs)", plain, values)
    plain_fan = fan_in_figures("fan_in_plain", LocalExecutor(parallelism=16))
    values_fan = fan_in_figures("fan_in_values", LocalExecutor(parallelism=16))
    print(f"  fan-in: wall {plain_fan['wall_s']:.2f} s without values -> {values_fan['wall_s']:.2f} s with; "
          f"last upstream end -> sink start {plain_fan['sink_wait_ms']:.1f} -> {values_fan['sink_wait_ms']:.1f} ms; "
          f"scheduler peak RSS growth {plain_fan['rss_growth_mib']:.1f} -> {values_fan['rss_growth_mib']:.1f} MiB; "
          f"sink's --inputs {handover_size(args.fan_in):,} chars")
    print(f"  scheduler process peak RSS {peak_rss_mib():.0f} MiB")


def bench_celery(args) -> None:
    from crossdock.configuration import conf
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.executors.celery_worker import start_embedded_workers

    with own_redis_server() as redis_url:
        home = setup_home("sqlite")
        queue = f"bench-{uuid.uuid4().hex[:6]}"
        os.environ["CROSSDOCK__CELERY__BROKER_URL"] = f"{redis_url}/0"
        os.environ["CROSSDOCK__CELERY__RESULT_BACKEND"] = f"{redis_url}/1"
        conf.reload()
        write_dags(home, chain=args.chain, fan_in=args.fan_in, queue=queue)
        parse_into_db(home)
        print(f"CeleryExecutor, private Redis broker and backend, one embedded worker (chain of {args.chain})")
        with start_embedded_workers(queues=[queue], concurrency=2):
            plain, values = chains(CeleryExecutor, args.rounds)
        print_chain(f"chain (median of {args.rounds} alternating runs)", plain, values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--fan-in", type=int, default=1000)
    parser.add_argument("--no-celery", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bench_local(args)
    if not args.no_celery:
        if port_open(6379) or os.path.exists("/usr/bin/redis-server"):
            bench_celery(args)
        else:
            print("Celery: skipped (no redis-server)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
