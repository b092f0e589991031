"""Warm pods on a real kube-apiserver v1.20 with our node agent: the scenarios it can judge.

The same tests as ``test_kubernetes_warm_pods.py``, collected again with this module's
``tier`` (the real server, pods run by the agent of ``test_kubernetes_executor_real.py``'s
``real_api``) and ``runtime`` (only what the warm tests read of one: the kubeconfig the
warm pods watch their own object with, handed to them by ``share_local_environment``).
The real server decides what the local runtime imitates: that a pod watch by field selector
sees the assignment patch, that a patch carrying a stale resourceVersion is refused (409,
the exactly-once guarantee), and that deleting a bound warm pod ends it through the agent.
Needs ``.ci/kube-apiserver.sh`` to have exported ``CROSSDOCK_TEST_REAL_KUBECONFIG``.

Left out, as they add nothing the real server judges: warm pods off by default (no warm
pod is ever made; cold pods are covered by ``test_kubernetes_executor_real.py``), and the
executor's own clock and bookkeeping (idle expiry, deleting a dead scheduler's unassigned
warm pods: a list and deletes the real tier already judges in the tests kept).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kube_executor_support import require_real_kubeconfig

# The real server and its agent, shared with the executor's real tier; a namespace per module.
from test_kubernetes_executor_real import real_api, tier  # noqa: F401 - fixtures
# The same scenarios, collected here again with the fixtures above.
from test_kubernetes_warm_pods import (  # noqa: F401 - imported to be collected
    test_a_pod_takes_one_assignment_a_second_at_the_same_version_is_refused,
    test_a_running_pod_is_offered_only_once_it_says_on_its_log_that_it_is_ready,
    test_a_try_in_a_warm_pod_is_adopted_by_a_new_scheduler_and_runs_once,
    test_tasks_start_in_warm_pods_one_try_per_pod_and_a_burst_falls_back_cold,
    test_warm_pod_killed_before_assignment_is_replaced_and_no_task_fails,
)

pytestmark = pytest.mark.kube_apiserver


@pytest.fixture
def runtime(real_api):  # noqa: F811 - the fixture imported above
    """What the warm tests' ``setup`` reads of a runtime: the kubeconfig the warm pods use."""
    return SimpleNamespace(kubeconfig_path=require_real_kubeconfig())
