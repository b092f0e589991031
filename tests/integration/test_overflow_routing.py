"""Overflow on the real hybrid: a burst on ``default`` beyond ``[executor_routing] overflow``'s
limit spills to pods on the local runtime, the rest stays on the embedded Celery worker, a
task after the backlog drained is not moved, and a ledger the tasks append to shows that
every task ran exactly once."""

from __future__ import annotations

from collections import Counter

from kube_executor_support import parse_and_trigger, run_scheduler, run_states, use_dag_files, write_dag
from test_hybrid_executor import hybrid_services  # noqa: F401  (the fixture)

BURST = 6
LIMIT = 2


def test_overflow_moves_a_burst_only_while_the_backlog_holds_and_each_task_runs_once(
        crossdock_home, monkeypatch, tmp_path, request):
    folder = use_dag_files(crossdock_home, monkeypatch,
                           EXECUTOR_ROUTING__OVERFLOW=f"default -> KubernetesExecutor when queued > {LIMIT}")
    ledger = tmp_path / "ledger.txt"
    write_dag(folder, "spill", f"""
        def appends(task_id):
            return f'echo "{{task_id}} $HOSTNAME" >> {ledger}'

        with DAG("spill") as dag:
            burst = [BashOperator(task_id=f"b{{i}}", bash_command=appends(f"b{{i}}")) for i in range({BURST})]
            burst >> BashOperator(task_id="after", bash_command=appends("after"))
    """)
    request.getfixturevalue("hybrid_services")  # workers and pods start with this configuration
    from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor

    parse_and_trigger(folder, "spill")
    executor = CeleryKubernetesExecutor()
    run_scheduler(executor)
    state, tis = run_states("spill")
    assert state == "success", {t: (ti.state, ti.failure_reason) for t, ti in tis.items()}
    moved = {t for t, ti in tis.items() if ti.executor == "KubernetesExecutor"}
    assert len(moved) == BURST - (LIMIT + 1) and "after" not in moved  # the first LIMIT + 1 made the backlog
    for task_id in moved:
        assert tis[task_id].routing_reason.startswith("overflow: queue 'default' queued "), tis[task_id].routing_reason
    stayed = set(tis) - moved
    assert all(tis[t].executor == "CeleryExecutor" and not tis[t].routing_reason.startswith("overflow")
               for t in stayed)
    lines = [line.split() for line in ledger.read_text().splitlines()]
    assert Counter(fields[0] for fields in lines) == Counter(set(tis))  # every task once, none twice
    ran_on = {fields[0]: fields[1] if len(fields) > 1 else "" for fields in lines}
    assert all(ran_on[t] == tis[t].hostname for t in moved)  # in the pod the scheduler recorded
