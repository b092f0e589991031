"""The autoscaler's *kubernetes* driver against a real kube-apiserver, and the deploy objects it accepts.

The API server is v1.20 with etcd and no controllers (``.ci/kube-apiserver.sh``): no
ReplicaSet turns replicas into pods, so the tests assert the objects — a Deployment's
``spec.replicas``, a pod's annotations — and, where a test needs a worker's pod, create
the pod object the ReplicaSet would have made (labels of the Deployment's selector) and
set its phase through the status subresource, as a kubelet would. The Celery worker behind
such a pod is a real ``crossdock celery worker`` named ``celery@<pod name>`` on the run's
Redis. Without the API server these tests skip, unless ``CROSSDOCK_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from kubernetes import client, config

from crossdock.cli.main import main
from crossdock.configuration import conf
from crossdock.deploy.worker_manifests import worker_deployments
from crossdock.monitoring.autoscaler import Autoscaler
from crossdock.monitoring.kubernetes_workers import (
    DELETION_COST_ANNOTATION, DRAINING_ANNOTATION, RELEASED_ANNOTATION, RELEASED_DELETION_COST, KubernetesWorkerPool)
from crossdock.monitoring.queue_monitor import CELERY, QueueMonitor
from crossdock.monitoring.queue_status import QueueStatus
from crossdock.monitoring.worker_deployments import deployment_name, selector_labels
from crossdock.monitoring.worker_queues import WorkerQueues
from executor_doubles import loop_until
from kube_executor_support import new_namespace, require_real_kubeconfig, use_dag_files, wait_until
from service_gates import REDIS_URL, require_service

pytestmark = pytest.mark.kube_apiserver
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="module")
def cluster():
    """(kubeconfig, a client, a namespace of this module's own)."""
    kubeconfig = require_real_kubeconfig()
    api = config.new_client_from_config(config_file=kubeconfig)
    namespace = new_namespace(lambda: api)
    yield kubeconfig, api, namespace
    # The namespace stays (nothing would finalize its deletion); its pods and Deployments do not.
    client.CoreV1Api(api).delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    client.AppsV1Api(api).delete_collection_namespaced_deployment(namespace)


def configure(monkeypatch, namespace: str, queues: dict[str, dict], **settings: str) -> list[str]:
    """``[worker_queues] queues`` (names made unique to the test) in ``namespace``; returns the names."""
    suffix = uuid.uuid4().hex[:6]
    named = {f"{name}-{suffix}": entry for name, entry in queues.items()}
    env = {"WORKER_QUEUES__QUEUES": json.dumps(named), "KUBERNETES_EXECUTOR__NAMESPACE": namespace, **settings}
    for key, value in env.items():
        monkeypatch.setenv(f"CROSSDOCK__{key}", value)
    conf.reload()
    return list(named)


def create_deployment(api, namespace: str, queue: str, replicas: int) -> str:
    """The Deployment ``crossdock deploy workers`` generates for ``queue``, created with ``replicas``."""
    [deployment] = worker_deployments([WorkerQueues.from_config().spec_for(queue)])
    deployment["spec"]["replicas"] = replicas
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment)
    return deployment["metadata"]["name"]


def replicas(api, namespace: str, queue: str) -> int:
    return client.AppsV1Api(api).read_namespaced_deployment(deployment_name(queue), namespace).spec.replicas


def worker_pod(api, namespace: str, queue: str, name: str, *, phase: str = "Pending") -> str:
    """The pod object a ReplicaSet would make for the queue's Deployment, in ``phase``."""
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": selector_labels(queue)},
        "spec": {"containers": [{"name": "worker", "image": "crossdock-worker:latest"}]}})
    if phase != "Pending":
        core.patch_namespaced_pod_status(name, namespace, {"status": {"phase": phase}})
    return name


def annotations(api, namespace: str, pod: str) -> dict[str, str]:
    return client.CoreV1Api(api).read_namespaced_pod(pod, namespace).metadata.annotations or {}


def autoscaler_for(api, namespace: str, **pool_options) -> Autoscaler:
    pool = KubernetesWorkerPool(api_client=api, namespace=namespace, **pool_options)
    return Autoscaler(monitor=QueueMonitor(read_workers=False), pool=pool, cooldown=0)


def waiting(queue: str, queued: int, running: int = 0) -> QueueStatus:
    return QueueStatus(queue=queue, executor=CELERY, queued=queued, running=running)


def test_a_decision_sets_the_deployment_to_the_formula_and_back(cluster, monkeypatch):
    _, api, namespace = cluster
    [queue] = configure(monkeypatch, namespace, {"burst": {"min_workers": 0, "max_workers": 4,
                                                           "max_tasks_per_worker": 4}})
    create_deployment(api, namespace, queue, replicas=0)
    scaler = autoscaler_for(api, namespace)

    [decision] = scaler.decide([waiting(queue, queued=9, running=1)])
    assert (decision.action, decision.desired, decision.actual) == ("up", 3, 3)  # ceil(10 / 4)
    assert replicas(api, namespace, queue) == 3
    [decision] = scaler.decide([waiting(queue, queued=300)])
    assert (decision.action, decision.actual) == ("up", 4) and "capped at max_workers 4" in decision.reason
    assert replicas(api, namespace, queue) == 4
    # No controller made pods for these replicas: there is nothing to drain, they go at once.
    [decision] = scaler.decide([waiting(queue, queued=0)])
    assert (decision.action, decision.desired, decision.actual) == ("down", 0, 0)
    assert replicas(api, namespace, queue) == 0


def test_scale_down_drains_the_chosen_pod_before_its_replica_goes(cluster, monkeypatch):
    _, api, namespace = cluster
    [queue] = configure(monkeypatch, namespace, {"steady": {"min_workers": 0, "max_workers": 4,
                                                            "max_tasks_per_worker": 4}})
    name = create_deployment(api, namespace, queue, replicas=2)
    pods = [worker_pod(api, namespace, queue, f"{name}-{tag}") for tag in ("aaaaa", "bbbbb")]
    scaler = autoscaler_for(api, namespace)

    [decision] = scaler.decide([waiting(queue, queued=4)])  # one worker's worth
    assert (decision.action, decision.desired, decision.actual) == ("down", 1, 1)
    [chosen] = decision.draining
    assert chosen in pods and DRAINING_ANNOTATION in annotations(api, namespace, chosen)
    [kept] = [pod for pod in pods if pod != chosen]
    assert not annotations(api, namespace, kept)
    assert replicas(api, namespace, queue) == 2  # the replica stays until the pod has drained

    # Next step: the pod runs nothing (it never started), so it is released.
    [decision] = scaler.decide([waiting(queue, queued=4)])
    assert (decision.action, decision.actual, decision.draining) == ("none", 1, [])
    assert replicas(api, namespace, queue) == 1
    marks = annotations(api, namespace, chosen)
    assert marks[DELETION_COST_ANNOTATION] == str(RELEASED_DELETION_COST) and RELEASED_ANNOTATION in marks
    assert DELETION_COST_ANNOTATION not in annotations(api, namespace, kept)


def test_a_missing_deployment_is_the_queue_s_decision_and_the_others_go_on(cluster, monkeypatch):
    _, api, namespace = cluster
    present, missing = configure(monkeypatch, namespace, {
        "present": {"min_workers": 0, "max_workers": 2, "max_tasks_per_worker": 1},
        "missing": {"min_workers": 0, "max_workers": 2, "max_tasks_per_worker": 1}})
    create_deployment(api, namespace, present, replicas=0)
    scaler = autoscaler_for(api, namespace)
    decisions = {d.queue: d for d in scaler.decide([waiting(missing, queued=2), waiting(present, queued=2)])}
    assert decisions[missing].action == "error"
    assert f"Deployment {namespace}/{deployment_name(missing)} of queue {missing!r} not found" in \
        decisions[missing].reason and "crossdock deploy workers" in decisions[missing].reason
    assert (decisions[present].action, decisions[present].actual) == ("up", 2)
    assert replicas(api, namespace, present) == 2


def test_celery_autoscaler_once_sizes_each_deployment_and_prints_the_decisions(cluster, monkeypatch):
    kubeconfig, api, namespace = cluster
    [queue] = configure(monkeypatch, namespace, {"floor": {"min_workers": 2, "max_workers": 3}},
                        KUBERNETES_EXECUTOR__CONFIG_FILE=kubeconfig, CORE__EXECUTOR="CeleryExecutor")
    from crossdock import database

    database.migrate()
    create_deployment(api, namespace, queue, replicas=0)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["celery", "autoscaler", "--once", "-o", "json"]) == 0
    printed = {d["queue"]: d for d in json.loads(out.getvalue())}
    assert (printed[queue]["action"], printed[queue]["desired"], printed[queue]["actual"]) == ("up", 2, 2)
    assert "raised to min_workers 2" in printed[queue]["reason"]
    assert replicas(api, namespace, queue) == 2
    # [core] default_queue is a Celery queue too, and nobody made its Deployment: said, not fatal.
    assert printed["default"]["action"] == "error" and "not found" in printed["default"]["reason"]


# -- drain-first with a real Celery worker --------------------------------------------------
BUSY_DAG = """
    import time
    from crossdock import DAG, PythonOperator

    def work():
        open({started!r}, "w").close()
        time.sleep(2)
        with open({ledger!r}, "a") as handle:
            handle.write("done\\n")

    with DAG("drained", schedule=None):
        PythonOperator(task_id="work", python_callable=work)
"""


def start_worker_named(hostname: str, queue: str):
    """A real ``crossdock celery worker -q QUEUE -c 1`` with the Celery node name of a pod."""
    from crossdock.config_secrets import environment_for_worker
    from crossdock.executors.celery_worker import EmbeddedWorkers

    state = Path(tempfile.mkdtemp(prefix="crossdock-k8s-worker-"))
    ready, pid = state / "ready", state / "pid"
    argv = [sys.executable, "-m", "crossdock.cli.main", "celery", "worker", "-q", queue, "-c", "1",
            "-H", hostname, "--pid", str(pid), "--ready-file", str(ready), "-l", "WARNING",
            "--without-mingle", "--without-gossip", "--skip-serve-logs"]
    process = subprocess.Popen(argv, env=environment_for_worker(os.environ), start_new_session=True)
    workers = EmbeddedWorkers([process], [hostname], [ready], [pid])
    workers.wait_ready()
    return workers, state


def consumes(app, hostname: str, queue: str) -> bool:
    replies = app.control.inspect(destination=[hostname], timeout=1.0).active_queues() or {}
    return queue in {q["name"] for q in replies.get(hostname) or ()}


def test_a_busy_worker_keeps_its_pod_until_its_task_ends(cluster, monkeypatch, crossdock_home, caplog):
    """Drain-first for real: cancel_consumer reaches the worker, a running task is never cut short."""
    from crossdock.executors.celery_app import get_celery_app
    from crossdock.executors.celery_executor import CeleryExecutor
    from crossdock.scheduler.scheduler_job import SchedulerJob
    from kube_executor_support import parse_and_trigger

    require_service("redis")
    _, api, namespace = cluster
    started, ledger = crossdock_home / "started", crossdock_home / "ledger"
    [queue] = configure(monkeypatch, namespace, {"drain": {"min_workers": 0, "max_workers": 2,
                                                           "max_tasks_per_worker": 1}})
    folder = use_dag_files(crossdock_home, monkeypatch,
                           {"drained.py": BUSY_DAG.format(started=str(started), ledger=str(ledger))},
                           CORE__EXECUTOR="CeleryExecutor", CORE__DEFAULT_QUEUE=queue,
                           CELERY__BROKER_URL=f"{REDIS_URL}/4", CELERY__RESULT_BACKEND=f"{REDIS_URL}/5",
                           SCHEDULER__MAX_LOOP_SLEEP="0.02")
    parse_and_trigger(folder, "drained")
    name = create_deployment(api, namespace, queue, replicas=1)
    pod = worker_pod(api, namespace, queue, f"{name}-wk001", phase="Running")
    app = get_celery_app()
    pool = KubernetesWorkerPool(api_client=api, namespace=namespace, celery_app=app, drain_grace=0.0)
    workers, state = start_worker_named(f"celery@{pod}", queue)
    job = SchedulerJob(executors=[CeleryExecutor()], parse_dags=False)
    try:
        job.start()
        loop_until(job, started.exists, "the task to start")
        status = wait_until(lambda: next((s for s in QueueMonitor().refresh()
                                          if s.queue == queue and s.worker_hosts and s.worker_hosts[0].active), None),
                            what="the worker to report its running task")
        assert pool.scale_down(queue, 1, status) == [pod]
        wait_until(lambda: not consumes(app, f"celery@{pod}", queue), what="the worker to stop consuming")
        assert pool.actual_workers(queue) == 0 and pool.draining_workers(queue) == [pod]
        with caplog.at_level(logging.WARNING, logger="crossdock.monitoring.autoscaler"):
            pool.tick()  # busy, and past drain_grace (0 s): reported, left alone
        assert f"draining worker {pod} still runs 1 task(s) after drain_grace" in caplog.text
        assert "left running" in caplog.text
        assert replicas(api, namespace, queue) == 1 and RELEASED_ANNOTATION not in annotations(api, namespace, pod)

        loop_until(job, lambda: not job.runs, "the DAG run to finish")
        pool.tick()  # idle now: released
        assert replicas(api, namespace, queue) == 0
        assert annotations(api, namespace, pod)[DELETION_COST_ANNOTATION] == str(RELEASED_DELETION_COST)
    finally:
        job.shutdown()
        workers.stop(timeout=10)
        shutil.rmtree(state, ignore_errors=True)
    assert ledger.read_text() == "done\n"  # ran to its end, once


# -- the deploy objects, judged by the API server -------------------------------------------
def kubectl(kubeconfig: str, *args: str) -> subprocess.CompletedProcess:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("needs kubectl (Debian package kubernetes-client)")
    return subprocess.run([path, "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, timeout=60)


def test_the_base_with_workers_and_autoscaler_is_accepted_by_the_api_server(cluster, monkeypatch, tmp_path):
    kubeconfig, _, namespace = cluster
    monkeypatch.setenv("CROSSDOCK_CONFIG", str(DEPLOY / "crossdock.cfg"))
    conf.reload()
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["deploy", "workers"]) == 0
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "workers.yaml").write_text(out.getvalue())
    base = os.path.relpath(DEPLOY, overlay)
    (overlay / "kustomization.yaml").write_text(textwrap.dedent(f"""\
        resources: [{base}, workers.yaml]
        components: [{base}/autoscaler]
        namespace: {namespace}
    """))
    done = kubectl(kubeconfig, "apply", "--dry-run=server", "-k", str(overlay), "-o", "name")
    assert done.returncode == 0, done.stderr
    applied = set(done.stdout.split())
    assert {"deployment.apps/crossdock-scheduler", "deployment.apps/crossdock-autoscaler",
            "deployment.apps/crossdock-worker-default", "service/crossdock-scheduler-metrics",
            "role.rbac.authorization.k8s.io/crossdock-worker-scaler",
            "configmap/crossdock-config"} <= applied

    # Not vacuous: the same server refuses a worker whose selector misses its pods' labels.
    (overlay / "workers.yaml").write_text(out.getvalue().replace(
        "      labels:\n        app.kubernetes.io/name: crossdock\n        app.kubernetes.io/component: celery-worker",
        "      labels:\n        app.kubernetes.io/name: crossdock\n        app.kubernetes.io/component: other", 1))
    refused = kubectl(kubeconfig, "apply", "--dry-run=server", "-k", str(overlay), "-o", "name")
    assert refused.returncode != 0 and "selector" in refused.stderr
