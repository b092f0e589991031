"""Values between tasks when every task runs in a pod of its own.

Each pod reports what its try pushed on its last log line, which the executor reads
before the pod is deleted; the next pod gets the values in its command. Collected here
on the local pod runtime and, by ``test_kubernetes_executor_real.py``, on the real
kube-apiserver with our node agent.
"""

from __future__ import annotations

import textwrap

from crossdock.executors.kubernetes_executor import KubernetesExecutor

from kube_executor_support import configure, parse_and_trigger, run_scheduler, run_states
from test_kubernetes_executor_pods import runtime, tier  # noqa: F401 - the local tier's fixtures
from test_xcom_executors import assert_values_went_through, run_values_dag


def test_values_pass_between_pods_through_the_scheduler(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    state, tis = run_values_dag(KubernetesExecutor(api_client=tier.make_client()), folder)
    assert_values_went_through(state, tis)
    assert all(ti.hostname.startswith("values-") for ti in tis.values())  # each ran in its pod


def test_skips_branches_and_fail_without_retry_come_back_from_pods(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    (folder / "pod_flow.py").write_text(textwrap.dedent('''
        from crossdock import DAG, AirflowFailException, BashOperator, BranchPythonOperator, PythonOperator

        def fail_now():
            raise AirflowFailException("corrupt input")

        with DAG("pod_flow", schedule=None) as dag:
            branch = BranchPythonOperator(task_id="branch", python_callable=lambda: "left")
            branch >> [BashOperator(task_id="left", bash_command="true"),
                       BashOperator(task_id="right", bash_command="true")]
            BashOperator(task_id="bash_skip", bash_command="exit 99")
            PythonOperator(task_id="fail_now", python_callable=fail_now, retries=2, retry_delay=0)
    '''))
    parse_and_trigger(folder, "pod_flow")
    run_scheduler(KubernetesExecutor(api_client=tier.make_client()))
    _, tis = run_states("pod_flow")
    assert {task_id: ti.state for task_id, ti in tis.items()} == {
        "branch": "success", "left": "success", "right": "skipped", "bash_skip": "skipped", "fail_now": "failed"}
    assert tis["fail_now"].try_number == 1 and "corrupt input" in tis["fail_now"].failure_reason


def test_a_mapped_task_runs_one_pod_per_instance(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace, delete_worker_pods="False")
    (folder / "pod_map.py").write_text(textwrap.dedent('''
        from crossdock import DAG, task

        with DAG("pod_map", schedule=None) as dag:
            @task
            def square(x):
                return x * x

            @task
            def total(values):
                assert values == [1, 4, 9], values

            total(square.expand(x=[1, 2, 3]))
    '''))
    parse_and_trigger(folder, "pod_map")
    run_scheduler(KubernetesExecutor(api_client=tier.make_client()))
    state, _ = run_states("pod_map")
    assert state == "success"
    labels = sorted(pod["metadata"]["labels"].get("map_index", "-") for pod in tier.pods()
                    if pod["metadata"]["labels"].get("task_id") == "square")
    assert labels == ["0", "1", "2"]
