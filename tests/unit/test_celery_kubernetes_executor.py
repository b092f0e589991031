"""The hybrid executor's contract from the seed: routing, merged views, delegation.

The children here are recording BaseExecutor subclasses handed to the constructor (the
seed's ``__init__(celery_executor=, kubernetes_executor=)``), so each point checks the
hybrid's own logic; the real Celery and Kubernetes children run in the integration tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from crossdock.configuration import ConfigError, conf
from crossdock.executors.base_executor import BaseExecutor
from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.state import TaskInstanceState as S

COMMAND = ["crossdock", "tasks", "run", "d", "t", "r", "--try-number", "1"]


@dataclass
class FakeTI:
    task_id: str
    queue: str | None = "default"
    executor: str | None = None
    priority_weight: int = 1
    dag_id: str = "d"
    run_id: str = "r"
    try_number: int = 1
    map_index: int = -1
    executor_config: dict | None = None

    @property
    def key(self):
        return TaskInstanceKey(self.dag_id, self.task_id, self.run_id, self.try_number, self.map_index)


class Child(BaseExecutor):
    def __init__(self, label, parallelism=10):
        super().__init__(parallelism=parallelism)
        self.label = label
        self.calls = []
        self.adoptable = set()

    def execute_async(self, key, command, queue=None, executor_config=None):
        self.calls.append(("execute_async", key.task_id, queue))

    def sync(self):
        self.calls.append(("sync",))

    def start(self):
        self.calls.append(("start",))

    def end(self):
        self.calls.append(("end",))

    def terminate(self):
        self.calls.append(("terminate",))

    def revoke_task(self, *, ti):
        self.calls.append(("revoke", ti.task_id))

    def cleanup_stuck_queued_tasks(self, tis):
        return [f"{self.label}:{ti.task_id}" for ti in tis]

    def try_adopt_task_instances(self, tis):
        return [ti for ti in tis if ti.task_id not in self.adoptable]

    def get_task_log(self, ti, try_number):
        return [f"{self.label} log"], [f"try {try_number}"]

    @staticmethod
    def get_cli_commands():
        return []


@pytest.fixture
def hybrid():
    celery, kubernetes = Child("celery"), Child("kubernetes")
    return CeleryKubernetesExecutor(celery_executor=celery, kubernetes_executor=kubernetes), celery, kubernetes


def test_class_attributes_match_the_seed():
    cls = CeleryKubernetesExecutor
    assert (cls.supports_ad_hoc_ti_run, cls.supports_pickling, cls.supports_sentry) == (True, True, False)
    assert (cls.is_local, cls.is_single_threaded, cls.is_production) == (False, False, True)
    assert cls.serve_logs is False and cls.callback_sink is None


def test_kubernetes_queue_default_and_config_and_child_learns_it(monkeypatch):
    celery, kubernetes = Child("c"), Child("k")
    assert CeleryKubernetesExecutor(celery, kubernetes).kubernetes_queue == "kubernetes"
    assert kubernetes.kubernetes_queue == "kubernetes"
    monkeypatch.setenv("CROSSDOCK__CELERY_KUBERNETES_EXECUTOR__KUBERNETES_QUEUE", "special_k8s_queue")
    conf.reload()
    celery, kubernetes = Child("c"), Child("k")
    hybrid = CeleryKubernetesExecutor(celery, kubernetes)
    assert hybrid.kubernetes_queue == kubernetes.kubernetes_queue == "special_k8s_queue"
    hybrid.queue_command(FakeTI("k", queue="special_k8s_queue"), COMMAND, queue="special_k8s_queue")
    hybrid.queue_command(FakeTI("c", queue="kubernetes"), COMMAND, queue="kubernetes")
    assert list(kubernetes.queued_tasks)[0].task_id == "k"
    assert list(celery.queued_tasks)[0].task_id == "c"


@pytest.mark.parametrize("queue, side", [("kubernetes", "kubernetes"), ("default", "celery"),
                                         ("high_memory", "celery"), (None, "celery"),
                                         ("Kubernetes", "celery"), ("kubernetes-x", "celery")])
def test_exact_queue_match_routes_to_kubernetes_everything_else_to_celery(hybrid, queue, side):
    executor, celery, kubernetes = hybrid
    ti = FakeTI("t", queue=queue)
    executor.queue_task_instance(ti)
    owner = {"celery": celery, "kubernetes": kubernetes}[side]
    other = kubernetes if owner is celery else celery
    assert ti.key in owner.queued_tasks and ti.key not in other.queued_tasks
    assert executor.has_task(ti)
    assert executor.executor_name_for(ti) == {"celery": "CeleryExecutor", "kubernetes": "KubernetesExecutor"}[side]


def test_merged_views_and_combined_capacity(hybrid):
    executor, celery, kubernetes = hybrid
    executor.queue_command(FakeTI("a", queue="kubernetes"), COMMAND, queue="kubernetes")
    executor.queue_command(FakeTI("b"), COMMAND, queue="default")
    assert {k.task_id for k in executor.queued_tasks} == {"a", "b"}
    executor.heartbeat()
    assert {k.task_id for k in executor.running} == {"a", "b"}
    assert executor.slots_occupied == 2
    assert executor.slots_available == (10 - 1) + (10 - 1)


def test_job_id_propagates_to_both_children(hybrid):
    executor, celery, kubernetes = hybrid
    executor.job_id = 77
    assert (executor.job_id, celery.job_id, kubernetes.job_id) == (77, 77, 77)


def test_lifecycle_calls_both_children_celery_first(hybrid):
    executor, celery, kubernetes = hybrid
    order = []
    celery.start = lambda: order.append("celery.start")
    kubernetes.start = lambda: order.append("kubernetes.start")
    celery.end = lambda: order.append("celery.end")
    kubernetes.end = lambda: order.append("kubernetes.end")
    celery.terminate = lambda: order.append("celery.terminate")
    kubernetes.terminate = lambda: order.append("kubernetes.terminate")
    celery.heartbeat = lambda: order.append("celery.heartbeat")
    kubernetes.heartbeat = lambda: order.append("kubernetes.heartbeat")
    executor.start()
    executor.heartbeat()
    executor.end()
    executor.terminate()
    assert order == ["celery.start", "kubernetes.start", "celery.heartbeat", "kubernetes.heartbeat",
                     "celery.end", "kubernetes.end", "celery.terminate", "kubernetes.terminate"]


def test_event_buffer_merges_both_and_passes_the_filter_down(hybrid):
    executor, celery, kubernetes = hybrid
    one, two, other = (TaskInstanceKey("one", "a", "r", 1), TaskInstanceKey("one", "b", "r", 1),
                       TaskInstanceKey("two", "c", "r", 1))
    celery.success(one)
    kubernetes.fail(two, "OOMKilled")
    kubernetes.success(other)
    assert executor.get_event_buffer(["one"]) == {one: (S.SUCCESS, None), two: (S.FAILED, "OOMKilled")}
    assert executor.get_event_buffer() == {other: (S.SUCCESS, None)}


def test_adoption_is_split_by_queue_and_returns_what_was_not_adopted(hybrid):
    executor, celery, kubernetes = hybrid
    celery.adoptable = {"c1"}
    kubernetes.adoptable = {"k1"}
    tis = [FakeTI("c1"), FakeTI("c2"), FakeTI("k1", queue="kubernetes"), FakeTI("k2", queue="kubernetes")]
    assert sorted(ti.task_id for ti in executor.try_adopt_task_instances(tis)) == ["c2", "k2"]


def test_cleanup_revoke_and_logs_go_to_the_owning_child(hybrid):
    executor, celery, kubernetes = hybrid
    tis = [FakeTI("c"), FakeTI("k", queue="kubernetes")]
    assert executor.cleanup_stuck_queued_tasks(tis) == ["celery:c", "kubernetes:k"]
    executor.revoke_task(ti=tis[1])
    assert ("revoke", "k") in kubernetes.calls and not any(c[0] == "revoke" for c in celery.calls)
    assert executor.get_task_log(tis[1], 2) == (["kubernetes log"], ["try 2"])
    assert executor.get_task_log(tis[0], 1) == (["celery log"], ["try 1"])


def test_execute_async_routes_by_the_queue_argument(hybrid):
    executor, celery, kubernetes = hybrid
    executor.execute_async(key=TaskInstanceKey("my_dag", "k8s_task", "manual_run", 1),
                           command=["python", "-c", "print('K8s task')"], queue="kubernetes")
    executor.execute_async(key=TaskInstanceKey("my_dag", "celery_task", "manual_run", 1),
                           command=["python", "-c", "print('Celery task')"], queue="default")
    assert ("execute_async", "k8s_task", "kubernetes") in kubernetes.calls
    assert ("execute_async", "celery_task", "default") in celery.calls
    assert {k.task_id for k in executor.running} == {"k8s_task", "celery_task"}
    executor.sync()
    assert ("sync",) in celery.calls and ("sync",) in kubernetes.calls


def test_send_callback_needs_the_hybrids_own_sink(hybrid):
    executor, _, _ = hybrid
    with pytest.raises(ValueError, match="Callback sink is not ready."):
        executor.send_callback(object())

    class Sink:
        sent = []

        def send(self, request):
            self.sent.append(request)

    executor.callback_sink = Sink()
    executor.send_callback("request")
    assert Sink.sent == ["request"]


def test_routing_rules_send_glob_queues_to_kubernetes(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__EXECUTOR_ROUTING__RULES", "gpu-*=KubernetesExecutor, isolated=KubernetesExecutor")
    conf.reload()
    celery, kubernetes = Child("c"), Child("k")
    executor = CeleryKubernetesExecutor(celery, kubernetes)
    for name, queue in [("g", "gpu-a100"), ("i", "isolated"), ("k", "kubernetes"), ("d", "default"),
                        ("n", "not-gpu-1")]:
        executor.queue_command(FakeTI(name, queue=queue), COMMAND, queue=queue)
    assert {k.task_id for k in kubernetes.queued_tasks} == {"g", "i", "k"}
    assert {k.task_id for k in celery.queued_tasks} == {"d", "n"}


def test_a_task_naming_a_child_executor_goes_there_whatever_its_queue(hybrid):
    executor, celery, kubernetes = hybrid
    executor.queue_task_instance(FakeTI("forced", queue="default", executor="KubernetesExecutor"))
    assert [k.task_id for k in kubernetes.queued_tasks] == ["forced"]


def test_bad_routing_rule_is_a_config_error(monkeypatch):
    from crossdock.executors.routing import check_rules, configured_rules

    monkeypatch.setenv("CROSSDOCK__EXECUTOR_ROUTING__RULES", "gpu-* KubernetesExecutor")
    conf.reload()
    with pytest.raises(ConfigError, match="is not 'queue-pattern = executor'"):
        configured_rules()
    monkeypatch.setenv("CROSSDOCK__EXECUTOR_ROUTING__RULES", "gpu-*=NomadExecutor")
    conf.reload()
    with pytest.raises(ConfigError, match="'gpu-\\*' = 'NomadExecutor' names an executor that is not configured"):
        check_rules(configured_rules(), ["CeleryExecutor", "KubernetesExecutor"])


def test_typed_events_merge_both_children_like_the_event_buffer(hybrid):
    from crossdock.executors.task_event import TaskEvent

    executor, celery, kubernetes = hybrid
    one, two = TaskInstanceKey("one", "a", "r", 1), TaskInstanceKey("one", "b", "r", 1)
    celery.report_event(one, TaskEvent(S.FAILED, reason="worker gone", infrastructure_loss=True))
    kubernetes.event_buffer[two] = (S.RUNNING, {"hostname": "pod-b"})
    assert executor.pop_task_events() == {
        one: TaskEvent(S.FAILED, reason="worker gone", infrastructure_loss=True),
        two: TaskEvent(S.RUNNING, hostname="pod-b")}
    assert executor.get_event_buffer() == {}


def test_a_command_a_child_refuses_through_execute_async_holds_no_slot():
    class Refusing(Child):
        def execute_async(self, key, command, queue=None, executor_config=None):
            if not self.refuse_command(key, command):  # fails the try at once, as Celery's does
                super().execute_async(key, command, queue, executor_config)

    celery, kubernetes = Refusing("celery"), Child("kubernetes")
    executor = CeleryKubernetesExecutor(celery_executor=celery, kubernetes_executor=kubernetes)
    key = TaskInstanceKey("my_dag", "celery_task", "manual_run", 1)
    executor.execute_async(key=key, command=["python", "-c", "print('Celery task')"], queue="default")
    assert key not in executor.running and celery.slots_available == 10
    state, reason = executor.get_event_buffer()[key]
    assert state == S.FAILED and reason.startswith("refusing to run")
