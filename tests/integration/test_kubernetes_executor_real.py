"""The KubernetesExecutor scenarios that a real kube-apiserver can play, run against one.

A real kube-apiserver v1.20 (with etcd) judges what the local runtime imitates; our node
agent runs the pods (there is no kubelet here). It needs ``.ci/kube-apiserver.sh`` to
have exported ``CROSSDOCK_TEST_REAL_KUBECONFIG``; without it these tests skip, saying so,
unless ``CROSSDOCK_REQUIRE_SERVICES=1``. Fault scenarios that need the local runtime's
hooks (injected HTTP errors, forced compaction, held pods) live only in
``test_kubernetes_executor_pods.py``.
"""

from __future__ import annotations

import pytest
from kubernetes import config

from crossdock.kubernetes.local_runtime.log_server import endpoint_auth_for
from crossdock.kubernetes.local_runtime.node_agent import NodeAgent

from kube_executor_support import REJECT_IMAGES, Tier, new_namespace, require_real_kubeconfig

# The same scenarios, collected here again with this module's real-apiserver ``tier``.
from test_kubernetes_executor_pods import (  # noqa: F401 - imported to be collected
    test_bad_pod_override_fails_that_task_only_with_a_readable_reason,
    test_dag_runs_in_pods_through_the_scheduler,
    test_log_is_saved_to_the_task_log_before_the_pod_is_deleted,
    test_new_scheduler_adopts_the_pods_of_a_killed_one,
    test_pod_killed_mid_task_fails_with_its_exit_code_and_is_retried,
    test_unpullable_image_fails_fast_and_its_pod_is_removed,
)
from test_kubernetes_values import (  # noqa: F401
    test_a_mapped_task_runs_one_pod_per_instance,
    test_skips_branches_and_fail_without_retry_come_back_from_pods,
    test_values_pass_between_pods_through_the_scheduler,
)
from test_kubernetes_executor_volumes import (  # noqa: F401
    cache_path, test_the_temporary_storage_example_gets_an_empty_dir_of_its_own,
)

pytestmark = pytest.mark.kube_apiserver


@pytest.fixture(scope="module")
def real_api(tmp_path_factory):
    kubeconfig = require_real_kubeconfig()

    def make_client():
        return config.new_client_from_config(config_file=kubeconfig)

    namespace = new_namespace(make_client)
    agent_client, state_dir = make_client(), tmp_path_factory.mktemp("real-agent")
    # This kube-apiserver runs without --kubelet-client-certificate: it fetches logs from a
    # node with no credentials, so the agent serves logs (only logs) to anyone here.
    agent = NodeAgent(api_client=agent_client, node_name=f"crossdock-{namespace}", state_dir=state_dir,
                      namespace=namespace, reject_images=REJECT_IMAGES,
                      endpoint_auth=endpoint_auth_for(agent_client, state_dir, anonymous_log_reads=True)).start()
    yield make_client, namespace, agent
    agent.stop(kill_pods=True)
    # The namespace stays (nothing here would finalize its deletion); its pods do not.
    Tier(name="real", make_client=make_client, namespace=namespace).delete_all_pods()


@pytest.fixture
def tier(real_api):
    make_client, namespace, agent = real_api
    tier = Tier(name="real", make_client=make_client, namespace=namespace, agent=agent)
    tier.delete_all_pods()  # one namespace per module: start each test from an empty one
    return tier
