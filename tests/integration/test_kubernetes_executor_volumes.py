"""The temporary-storage example of a ``pod_override``: an ``emptyDir`` at a mount path, per pod.

The DAG is the documented one (``k8s.V1Volume(empty_dir=...)`` mounted in the ``base``
container), run by the scheduler through the KubernetesExecutor on the local pod runtime
(and, from ``test_kubernetes_executor_real``, on a real kube-apiserver with our node
agent). The mount path is unique per test run (``/crossdock-test-cache-<hex>``) so that
parallel runs never share it, and the host must never see the pod's files there: the
directory exists on the host only while a pod uses it, empty, and is gone afterwards.
"""

from __future__ import annotations

import os
import uuid

import pytest

from crossdock.executors.kubernetes_executor import KubernetesExecutor
from crossdock.kubernetes.local_runtime.volumes import userns_available
from crossdock.runner.task_log import task_log_path_for_key
from crossdock.state import TaskInstanceState as S

from kube_executor_support import configure, parse_and_trigger, run_scheduler, run_states, wait_until, write_dag
from test_kubernetes_executor_pods import runtime, tier  # noqa: F401 - the local runtime, as the pods tests use it

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not userns_available(),
                                reason="a private mount namespace needs root or unprivileged user namespaces")

VOLUME_DAG = """
    from kubernetes.client import models as k8s

    CACHE = {cache!r}

    def config(read_only=False):
        volumes = [k8s.V1Volume(name="cache-volume", empty_dir=k8s.V1EmptyDirVolumeSource())]
        mounts = [k8s.V1VolumeMount(mount_path=CACHE, name="cache-volume", read_only=read_only),
                  k8s.V1VolumeMount(mount_path=CACHE + "-again", name="cache-volume")]
        return {{"pod_override": k8s.V1Pod(spec=k8s.V1PodSpec(
            containers=[k8s.V1Container(name="base", volume_mounts=mounts)], volumes=volumes))}}

    def empty_dir_example():
        with open(CACHE + "/volume_mount_test.txt", "w") as handle:
            handle.write("Hello")
        assert os.system("cat " + CACHE + "/volume_mount_test.txt") == 0  # a later process in the pod
        with open(CACHE + "-again/volume_mount_test.txt") as handle:  # the same volume, mounted twice
            assert handle.read() == "Hello"
        print("\\nwrote and read back")

    def another_pod():
        assert os.listdir(CACHE) == [], os.listdir(CACHE)
        print("another pod starts empty")

    def read_only():
        try:
            open(CACHE + "/nope", "w")
        except OSError as exc:
            print("write refused:", exc.strerror)
        else:
            raise AssertionError("a readOnly mount took a write")
        with open(CACHE + "-again/yes", "w") as handle:  # the writable mount of the same volume
            handle.write("ok")

    with DAG("volumes") as dag:
        first = PythonOperator(task_id="empty_dir_example", python_callable=empty_dir_example,
                               queue="kubernetes", executor_config=config())
        second = PythonOperator(task_id="another_pod", python_callable=another_pod,
                                queue="kubernetes", executor_config=config())
        PythonOperator(task_id="read_only", python_callable=read_only, queue="kubernetes",
                       executor_config=config(read_only=True))
        PythonOperator(task_id="host_path", python_callable=lambda: None, queue="kubernetes",
                       executor_config={{"pod_override": {{"spec": {{
                           "volumes": [{{"name": "h", "hostPath": {{"path": "/etc"}}}}],
                           "containers": [{{"name": "base",
                                            "volumeMounts": [{{"name": "h", "mountPath": "/h"}}]}}]}}}}}})
        first >> second
"""


@pytest.fixture
def cache_path():
    path = f"/crossdock-test-cache-{uuid.uuid4().hex[:12]}"
    yield path
    for leftover in (path, path + "-again"):  # only if the runtime left one behind (then the test failed)
        if os.path.isdir(leftover):
            os.rmdir(leftover)


def test_the_temporary_storage_example_gets_an_empty_dir_of_its_own(tier, crossdock_home, monkeypatch,
                                                                    cache_path):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    write_dag(folder, "volumes", VOLUME_DAG.format(cache=cache_path))
    parse_and_trigger(folder, "volumes")
    run_scheduler(KubernetesExecutor(api_client=tier.make_client()))

    _, tis = run_states("volumes")
    assert {task: ti.state for task, ti in tis.items()} == {
        "empty_dir_example": S.SUCCESS, "another_pod": S.SUCCESS, "read_only": S.SUCCESS, "host_path": S.FAILED}
    log = task_log_path_for_key(tis["empty_dir_example"].key).read_text()
    assert "Hello\nwrote and read back" in log
    assert "another pod starts empty" in task_log_path_for_key(tis["another_pod"].key).read_text()
    assert "write refused: Read-only file system" in task_log_path_for_key(tis["read_only"].key).read_text()
    assert "CreateContainerConfigError" in tis["host_path"].failure_reason
    assert 'volume "h": hostPath volumes are not supported by the local runtime (only emptyDir)' \
        in tis["host_path"].failure_reason
    # the host's mount paths never held the pods' files and are gone with the pods
    assert not os.path.exists(cache_path) and not os.path.exists(cache_path + "-again")
    # succeeded pods were deleted, and their volume folders with them (the failed one never had any)
    pods_dir = tier.agent.pods_dir

    def volume_folders() -> list[str]:
        return [uid for uid in os.listdir(pods_dir) if os.path.isdir(pods_dir / uid / "volumes")]

    wait_until(lambda: volume_folders() == [], what="the deleted pods' volume folders to go")
