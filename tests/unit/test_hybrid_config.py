"""The seed's "Basic Configuration" and "Custom Queue Configuration" as a crossdock.cfg file.

A user copies the seed's INI sections into ``$CROSSDOCK_HOME/crossdock.cfg`` and expects
``[core] executor`` to build the hybrid and every other section to reach the child that
reads it. Nothing here connects anywhere: executors are built, not started, and the
Celery app only holds its settings until it is first used.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from crossdock.configuration import ConfigError, conf
from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor
from crossdock.executors.executor_loader import load_executors
from crossdock.executors.kubernetes_executor import KubernetesExecutor
from crossdock.models.taskinstancekey import TaskInstanceKey

SHORT_NAME = "CeleryKubernetesExecutor"
DOTTED_PATH = "crossdock.executors.celery_kubernetes_executor.CeleryKubernetesExecutor"

#: The seed's "Basic Configuration", with crossdock's dotted path in [core] executor.
SEED_BASIC_CONFIGURATION = """
[core]
executor = {executor}

[celery_kubernetes_executor]
kubernetes_queue = {kubernetes_queue}

[celery]
# Standard Celery configuration
broker_url = redis://redis:6379/0
result_backend = db+postgresql://postgres:airflow@postgres/airflow
worker_concurrency = {worker_concurrency}

[kubernetes_executor]
# Standard Kubernetes configuration
namespace = airflow
worker_container_repository = airflow-workers
worker_container_tag = {worker_container_tag}
"""

COMMAND = ["crossdock", "tasks", "run", "etl", "step", "r1", "--try-number", "1"]


@dataclass
class TI:
    """The fields of a task instance the hybrid routes on."""

    task_id: str
    queue: str | None
    executor: str | None = None
    priority_weight: int = 1

    @property
    def key(self) -> TaskInstanceKey:
        return TaskInstanceKey("etl", self.task_id, "r1", 1)


def write_config(home, text: str) -> None:
    (home / "crossdock.cfg").write_text(textwrap.dedent(text))
    conf.reload()


def load_only_hybrid() -> CeleryKubernetesExecutor:
    executors = load_executors()
    assert len(executors) == 1
    hybrid = executors[0]
    assert isinstance(hybrid, CeleryKubernetesExecutor)
    return hybrid


@pytest.mark.parametrize("executor", [SHORT_NAME, DOTTED_PATH])
def test_seed_basic_configuration_builds_the_hybrid_with_every_section_applied(crossdock_home, executor):
    write_config(crossdock_home, SEED_BASIC_CONFIGURATION.format(
        executor=executor, kubernetes_queue="kubernetes", worker_concurrency=16, worker_container_tag="latest"))

    hybrid = load_only_hybrid()
    assert hybrid.name == executor
    assert hybrid.kubernetes_queue == "kubernetes"

    celery = hybrid.celery_executor
    assert isinstance(celery, CeleryExecutor) and celery.name == "CeleryExecutor"
    assert celery.app.conf.broker_url == "redis://redis:6379/0"
    # The driver may be named for psycopg 3; the server, user and database are the seed's.
    assert celery.app.conf.result_backend.startswith("db+postgresql")
    assert celery.app.conf.result_backend.endswith("://postgres:airflow@postgres/airflow")
    assert celery.app.conf.worker_concurrency == 16

    kubernetes = hybrid.kubernetes_executor
    assert isinstance(kubernetes, KubernetesExecutor) and kubernetes.name == "KubernetesExecutor"
    assert kubernetes.kubernetes_queue == "kubernetes"
    assert kubernetes.settings.namespace == "airflow"
    assert kubernetes.settings.worker_image == "airflow-workers:latest"
    assert kubernetes.api_client is None, "building the executor must not connect to a cluster"


def test_every_value_comes_from_the_file_not_from_a_default(crossdock_home):
    """Values the defaults do not share, so a key the file fails to reach shows up."""
    write_config(crossdock_home, SEED_BASIC_CONFIGURATION.format(
        executor=DOTTED_PATH, kubernetes_queue="pods", worker_concurrency=3, worker_container_tag="2.9.1"))

    hybrid = load_only_hybrid()
    assert hybrid.kubernetes_queue == hybrid.kubernetes_executor.kubernetes_queue == "pods"
    assert hybrid.celery_executor.app.conf.worker_concurrency == 3
    assert hybrid.kubernetes_executor.settings.worker_image == "airflow-workers:2.9.1"
    # The pod the Kubernetes child would create carries the file's namespace and image.
    pod = hybrid.kubernetes_executor._build_pod(TaskInstanceKey("etl", "step", "r1", 1), COMMAND, None)
    assert pod["metadata"]["namespace"] == "airflow"
    base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
    assert base["image"] == "airflow-workers:2.9.1"


def test_environment_overrides_win_over_the_file(crossdock_home, monkeypatch):
    write_config(crossdock_home, SEED_BASIC_CONFIGURATION.format(
        executor=SHORT_NAME, kubernetes_queue="kubernetes", worker_concurrency=16, worker_container_tag="latest"))
    monkeypatch.setenv("CROSSDOCK__CELERY_KUBERNETES_EXECUTOR__KUBERNETES_QUEUE", "from_env")
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__NAMESPACE", "team-a")
    conf.reload()

    hybrid = load_only_hybrid()
    assert hybrid.kubernetes_queue == "from_env"
    assert hybrid.kubernetes_executor.settings.namespace == "team-a"
    assert hybrid.celery_executor.app.conf.broker_url == "redis://redis:6379/0"


def test_seed_tasks_route_by_queue_under_the_basic_configuration(crossdock_home):
    write_config(crossdock_home, SEED_BASIC_CONFIGURATION.format(
        executor=SHORT_NAME, kubernetes_queue="kubernetes", worker_concurrency=16, worker_container_tag="latest"))
    hybrid = load_only_hybrid()

    tasks = [TI("kubernetes_task", "kubernetes"), TI("celery_task", "default"),
             TI("high_memory_task", "high_memory"), TI("no_queue", None), TI("near_miss", "Kubernetes")]
    for ti in tasks:
        hybrid.queue_command(ti, COMMAND, queue=ti.queue)

    assert set(hybrid.kubernetes_executor.queued_tasks) == {tasks[0].key}
    assert set(hybrid.celery_executor.queued_tasks) == {ti.key for ti in tasks[1:]}
    assert {ti.task_id: hybrid.executor_name_for(ti) for ti in tasks} == {
        "kubernetes_task": "KubernetesExecutor", "celery_task": "CeleryExecutor",
        "high_memory_task": "CeleryExecutor", "no_queue": "CeleryExecutor", "near_miss": "CeleryExecutor"}


def test_custom_queue_configuration_routes_that_queue_and_only_it_to_kubernetes(crossdock_home):
    """The seed's variant: kubernetes_queue = special_k8s_queue; 'kubernetes' is then an ordinary Celery queue."""
    write_config(crossdock_home, f"""
        [core]
        executor = {SHORT_NAME}

        [celery_kubernetes_executor]
        kubernetes_queue = special_k8s_queue
    """)
    hybrid = load_only_hybrid()
    assert hybrid.kubernetes_queue == hybrid.kubernetes_executor.kubernetes_queue == "special_k8s_queue"

    special = TI("special_kubernetes_task", "special_k8s_queue")
    old_name = TI("was_kubernetes", "kubernetes")
    default = TI("celery_task", "default")
    for ti in (special, old_name, default):
        hybrid.queue_task_instance(ti)

    assert set(hybrid.kubernetes_executor.queued_tasks) == {special.key}
    assert set(hybrid.celery_executor.queued_tasks) == {old_name.key, default.key}
    assert hybrid.executor_name_for(special) == "KubernetesExecutor"
    assert hybrid.executor_name_for(old_name) == "CeleryExecutor"


def test_the_airflow_dotted_path_is_refused_with_a_clear_error(crossdock_home):
    """An airflow.cfg copied unchanged names Airflow's module: one line naming the key, no traceback."""
    write_config(crossdock_home, """
        [core]
        executor = airflow.providers.celery.executors.celery_kubernetes_executor.CeleryKubernetesExecutor
    """)
    with pytest.raises(ConfigError, match=r"\[core\] executor: cannot import 'airflow\.providers"):
        load_executors()


def test_a_bad_value_in_a_child_section_fails_naming_the_key(crossdock_home):
    write_config(crossdock_home, f"""
        [core]
        executor = {SHORT_NAME}

        [kubernetes_executor]
        worker_pods_creation_batch_size = many
    """)
    with pytest.raises(ConfigError, match=r"\[kubernetes_executor\] worker_pods_creation_batch_size"):
        load_executors()
