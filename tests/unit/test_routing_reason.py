"""The scheduler routes each try once and records why; ``tasks states-for-dag-run`` shows it."""

from __future__ import annotations

from crossdock.executors.celery_kubernetes_executor import CeleryKubernetesExecutor
from crossdock.executors.routing import ExecutorRouter, RoutingRule
from crossdock.scheduler.scheduler_job import SchedulerJob

from scheduler_support import ScriptedExecutor, write_dag
from test_scheduler import MAX_LOOPS, dags_folder, parse, run_states, runs_done, trigger  # noqa: F401

# The reasons recorded for a rule, a task's executor= and the default: test_scheduler.py,
# test_several_executors_per_task_executor_and_routing_rules.


def _hybrid():
    return CeleryKubernetesExecutor(celery_executor=ScriptedExecutor(), kubernetes_executor=ScriptedExecutor())


def test_a_hybrid_route_names_the_child_and_the_kubernetes_queue():
    hybrid = _hybrid()
    router = ExecutorRouter([hybrid], rules=[])
    to_pod = router.route("kubernetes", None)
    assert (to_pod.executor, to_pod.name) == (hybrid, "KubernetesExecutor")
    assert to_pod.reason.endswith("queue 'kubernetes' is [celery_kubernetes_executor] kubernetes_queue")
    to_worker = router.route("default", None)
    assert to_worker.name == "CeleryExecutor"
    assert "is not [celery_kubernetes_executor] kubernetes_queue" in to_worker.reason
    named = router.route("kubernetes", "CeleryExecutor")
    assert (named.executor, named.name, named.reason) == (hybrid, "CeleryExecutor", "executor='CeleryExecutor' on the task")


def test_a_rule_naming_a_hybrid_child_routes_to_that_child():
    hybrid = _hybrid()
    router = ExecutorRouter([hybrid], rules=[RoutingRule("gpu-*", "KubernetesExecutor")])
    route = router.route("gpu-a100", None)
    assert (route.executor, route.name) == (hybrid, "KubernetesExecutor")
    assert route.reason == "queue 'gpu-a100' matched [executor_routing] rule 'gpu-*' = KubernetesExecutor"
    assert router.route("x", "NomadExecutor") is None


def test_the_hybrid_does_not_route_again_what_the_scheduler_routed(dags_folder, monkeypatch):
    write_dag(dags_folder, "split", """
        with DAG("split") as dag:
            BashOperator(task_id="in_pod", bash_command="true", queue="kubernetes")
            BashOperator(task_id="on_worker", bash_command="true")
    """)
    parse(dags_folder)
    trigger("split")
    hybrid = _hybrid()
    decisions = []
    original = hybrid.route_child
    monkeypatch.setattr(hybrid, "route_child", lambda queue: decisions.append(queue) or original(queue))
    job = SchedulerJob(executors=[hybrid], parse_dags=False)
    job.run(stop_when=runs_done, max_loops=MAX_LOOPS)
    state, tis = run_states("split")
    assert state == "success"
    assert sorted(decisions) == ["default", "kubernetes"]  # once per try, by the scheduler's router
    assert [k.task_id for k in hybrid.kubernetes_executor.started] == ["in_pod"]
    assert [k.task_id for k in hybrid.celery_executor.started] == ["on_worker"]
    assert tis["in_pod"].executor == "KubernetesExecutor"
