"""Values between tasks when every task runs in a pod of its own.

Each pod reports what its try pushed on its last log line, which the executor reads
before the pod is deleted; the next pod gets the values in its command. Collected here
on the local pod runtime and, by ``test_kubernetes_executor_real.py``, on the real
kube-apiserver with our node agent.
"""

from __future__ import annotations

from crossdock.executors.kubernetes_executor import KubernetesExecutor

from kube_executor_support import configure
from test_kubernetes_executor_pods import runtime, tier  # noqa: F401 - the local tier's fixtures
from test_xcom_executors import assert_values_went_through, run_values_dag


def test_values_pass_between_pods_through_the_scheduler(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    state, tis = run_values_dag(KubernetesExecutor(api_client=tier.make_client()), folder)
    assert_values_went_through(state, tis)
    assert all(ti.hostname.startswith("values-") for ti in tis.values())  # each ran in its pod
