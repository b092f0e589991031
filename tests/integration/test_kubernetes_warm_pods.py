"""Warm pods end to end on the local pod runtime: created to size, one try each, replaced, expired, off by default.

Pods are real local processes of the runtime's node agent; a warm pod is
``python -m crossdock.runner.warm_pod`` watching its own pod object through the official
client with the kubeconfig the executor's configuration names (handed to pods by
``share_local_environment``), and running its one assigned ``crossdock tasks run``.
Every task appends its ``$HOSTNAME`` (its pod's name) to a ledger file, so the tests
see which pod ran which try.
"""

from __future__ import annotations

import pytest

from crossdock.executors.kubernetes_executor import KubernetesExecutor
from crossdock.kubernetes.local_runtime import start_local_runtime
from crossdock.kubernetes.warm_profile import WARM_LABEL
from crossdock.runner.command import task_run_command
from crossdock.state import TaskInstanceState as S

from kube_executor_support import REJECT_IMAGES, Tier, configure, new_namespace, wait_until, write_dag

LEDGER_TASK = 'BashOperator(task_id="{task_id}", bash_command="echo $HOSTNAME >> {ledger}")'


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    runtime = start_local_runtime(state_dir=tmp_path_factory.mktemp("warm-runtime"), reject_images=REJECT_IMAGES)
    yield runtime
    runtime.stop()


@pytest.fixture
def tier(runtime):
    namespace = new_namespace(runtime.api_client)
    tier = Tier(name="local", make_client=runtime.api_client, namespace=namespace, url=runtime.url,
                store=runtime.api.store)
    yield tier
    tier.fault("clear")
    tier.delete_all_pods()


def setup(tier, runtime, home, monkeypatch, tasks, **settings):
    """A DAG ``ledger`` of independent ledger tasks ``tasks``; an executor with ``settings``; the ledger path."""
    settings = {"warm_pool_size": 2, "config_file": runtime.kubeconfig_path, **settings}
    folder = configure(monkeypatch, home, tier.namespace, **settings)
    ledger = home / "ledger.txt"
    body = "\n".join(f"    {LEDGER_TASK.format(task_id=task_id, ledger=ledger)}" for task_id in tasks)
    write_dag(folder, "ledger", f'with DAG("ledger") as dag:\n{body}\n')
    executor = KubernetesExecutor(api_client=tier.make_client())
    executor.job_id = "warm-test"
    executor.start()
    return executor, ledger


def key_of(task_id):
    from crossdock.models import TaskInstance

    return TaskInstance(dag_id="ledger", task_id=task_id, run_id="r1", map_index=-1, try_number=1,
                        executor_config={}, queue="kubernetes", priority_weight=1)


def run_tasks(executor, task_ids, events, *, on_step=None):
    """Queue ``task_ids`` and pump the executor until each has a final state."""
    tis = [key_of(task_id) for task_id in task_ids]
    for ti in tis:
        executor.queue_command(ti, task_run_command(ti.key, subdir="DAGS_FOLDER/ledger.py"))

    def step():
        executor.heartbeat()
        for key, value in executor.get_event_buffer().items():
            events.setdefault(key, []).append(value)
        if on_step is not None:
            on_step()

    wait_until(lambda: all(any(state in (S.SUCCESS, S.FAILED) for state, _ in events.get(ti.key, ())) for ti in tis),
               step=step, what=f"tasks {task_ids}")
    return {ti.task_id: events[ti.key] for ti in tis}


def final(history):
    return next(state for state, _ in history if state in (S.SUCCESS, S.FAILED))


def hostname(executor, history):
    info = next(info for state, info in history if state == S.RUNNING)
    return info["hostname"] if isinstance(info, dict) else info.hostname


def ready_warm(executor, count):
    wait_until(lambda: sum(1 for warm in executor.warm_pods() if warm.ready) >= count, step=executor.sync,
               what=f"{count} ready warm pods")


def warm_pods_in(tier):
    return [pod for pod in tier.pods() if (pod["metadata"].get("labels") or {}).get(WARM_LABEL) == "true"]


def test_tasks_start_in_warm_pods_one_try_per_pod_and_a_burst_falls_back_cold(tier, runtime, crossdock_home,
                                                                                monkeypatch):
    tasks = ["first", "second", "third", *(f"burst{n}" for n in range(5))]
    executor, ledger = setup(tier, runtime, crossdock_home, monkeypatch, tasks)
    events: dict = {}
    sizes = []
    # the first try starts cold and makes its profile recent: the pool fills to its size
    first = run_tasks(executor, ["first"], events)["first"]
    assert final(first) == S.SUCCESS and not hostname(executor, first).startswith("warm-")
    ready_warm(executor, 2)
    assert len(executor.warm_pods()) == 2 and len(warm_pods_in(tier)) == 2
    # a try then starts in a warm pod: its hostname is that warm pod's name
    second = run_tasks(executor, ["second"], events, on_step=lambda: sizes.append(len(executor.warm_pods())))["second"]
    assert final(second) == S.SUCCESS and hostname(executor, second).startswith("warm-")
    ready_warm(executor, 2)  # the used pod was replaced
    third = run_tasks(executor, ["third"], events)["third"]
    assert final(third) == S.SUCCESS and hostname(executor, third).startswith("warm-")
    ready_warm(executor, 2)
    # a burst larger than the pool: two tries warm, the rest cold, all succeed
    burst = run_tasks(executor, [f"burst{n}" for n in range(5)], events,
                      on_step=lambda: sizes.append(len(executor.warm_pods())))
    assert all(final(history) == S.SUCCESS for history in burst.values())
    burst_hosts = [hostname(executor, history) for history in burst.values()]
    assert sum(host.startswith("warm-") for host in burst_hosts) == 2, burst_hosts
    assert max(sizes) <= 2  # never more warm pods than the configured size for one profile
    # the ledger: every pod ran exactly one try, the one the executor says it did
    lines = ledger.read_text().split()
    assert sorted(lines) == sorted(hostname(executor, h) for h in [first, second, third, *burst.values()])
    assert len(lines) == len(set(lines)) == len(tasks)
    executor.end()
    wait_until(lambda: not warm_pods_in(tier), what="unassigned warm pods deleted at end")


def test_warm_pod_killed_before_assignment_is_replaced_and_no_task_fails(tier, runtime, crossdock_home, monkeypatch):
    executor, ledger = setup(tier, runtime, crossdock_home, monkeypatch, ["first", "after"], warm_pool_size=1)
    events: dict = {}
    assert final(run_tasks(executor, ["first"], events)["first"]) == S.SUCCESS
    ready_warm(executor, 1)
    victim = executor.warm_pods()[0].name
    assert tier.kill(victim)
    wait_until(lambda: any(w.ready and w.name != victim for w in executor.warm_pods()), step=executor.sync,
               what="a replacement warm pod")
    assert victim not in {w.name for w in executor.warm_pods()}
    after = run_tasks(executor, ["after"], events)["after"]
    assert final(after) == S.SUCCESS and hostname(executor, after).startswith("warm-")
    assert hostname(executor, after) != victim
    assert all(state != S.FAILED for history in events.values() for state, _ in history)
    assert sorted(ledger.read_text().split()) == sorted(hostname(executor, h) for h in events.values())
    executor.end()


def test_idle_warm_pods_are_deleted_and_their_profile_expires(tier, runtime, crossdock_home, monkeypatch):
    executor, _ledger = setup(tier, runtime, crossdock_home, monkeypatch, ["first"], warm_pod_idle_seconds=2)
    events: dict = {}
    assert final(run_tasks(executor, ["first"], events)["first"]) == S.SUCCESS
    ready_warm(executor, 2)
    names = {w.name for w in executor.warm_pods()}
    wait_until(lambda: not executor.warm_pods(), step=executor.sync, what="idle warm pods expired")
    wait_until(lambda: not names & {p["metadata"]["name"] for p in tier.pods()}, what="idle warm pods deleted")
    for _ in range(5):  # the profile expired with them: no new warm pod is made
        executor.sync()
    assert executor.warm_pods() == [] and warm_pods_in(tier) == []
    executor.end()


def test_warm_pods_are_off_by_default(tier, runtime, crossdock_home, monkeypatch):
    executor, ledger = setup(tier, runtime, crossdock_home, monkeypatch, ["one", "two"], warm_pool_size=0)
    events: dict = {}
    seen_warm = []
    results = run_tasks(executor, ["one", "two"], events, on_step=lambda: seen_warm.extend(warm_pods_in(tier)))
    assert all(final(history) == S.SUCCESS for history in results.values())
    assert seen_warm == [] and executor.warm_pods() == []
    assert not any(host.startswith("warm-") for host in ledger.read_text().split())
    executor.end()


def test_a_pod_takes_one_assignment_a_second_at_the_same_version_is_refused(tier, runtime, crossdock_home,
                                                                              monkeypatch):
    """Two assigners (two schedulers, or a retried patch) that saw the same unassigned pod: one wins."""
    from kubernetes.client.rest import ApiException

    from crossdock.kubernetes.warm_profile import assignment_of, assignment_patch

    executor, ledger = setup(tier, runtime, crossdock_home, monkeypatch, ["first", "winner", "rival"],
                             warm_pool_size=1, delete_worker_pods="False")
    events: dict = {}
    assert final(run_tasks(executor, ["first"], events)["first"]) == S.SUCCESS
    ready_warm(executor, 1)
    warm = executor.warm_pods()[0]

    def assign(task_id):
        key = key_of(task_id).key
        return tier.core.patch_namespaced_pod(warm.name, tier.namespace, assignment_patch(
            key=key, command=task_run_command(key, subdir="DAGS_FOLDER/ledger.py"),
            resource_version=warm.resource_version))

    assign("winner")
    with pytest.raises(ApiException) as refused:
        assign("rival")
    assert refused.value.status == 409
    wait_until(lambda: tier.core.read_namespaced_pod(warm.name, tier.namespace).status.phase == "Succeeded",
               step=executor.sync, what="the warm pod ran its task")
    pod = tier.core.api_client.sanitize_for_serialization(tier.core.read_namespaced_pod(warm.name, tier.namespace))
    assert assignment_of(pod)[4] == "winner"
    lines = ledger.read_text().split()
    assert lines.count(warm.name) == 1  # the pod ran one task, the winner's
    assert warm.name not in {w.name for w in executor.warm_pods()}  # and the executor no longer offers it
    executor.end()


def test_a_new_scheduler_deletes_the_unassigned_warm_pods_of_a_dead_one(tier, runtime, crossdock_home, monkeypatch):
    executor, _ledger = setup(tier, runtime, crossdock_home, monkeypatch, ["first"])
    events: dict = {}
    assert final(run_tasks(executor, ["first"], events)["first"]) == S.SUCCESS
    ready_warm(executor, 2)
    orphans = {w.name for w in executor.warm_pods()}
    executor._stop_watchers()  # the scheduler dies: no end(), its warm pods stay
    successor = KubernetesExecutor(api_client=tier.make_client())
    successor.job_id = "successor"
    successor.start()
    ti = key_of("first")
    ti.queued_by_job_id = "warm-test"
    assert successor.try_adopt_task_instances([ti]) == [ti]  # its try had finished: nothing to adopt
    wait_until(lambda: not orphans & {p["metadata"]["name"] for p in tier.pods()}, what="orphan warm pods deleted")
    successor.end()


def test_a_try_in_a_warm_pod_is_adopted_by_a_new_scheduler_and_runs_once(tier, runtime, crossdock_home, monkeypatch):
    executor, ledger = setup(tier, runtime, crossdock_home, monkeypatch, ["first"], warm_pool_size=1)
    (crossdock_home / "dags" / "slow.py").write_text(
        "from crossdock import DAG, BashOperator\n"
        f'with DAG("slow") as dag:\n    BashOperator(task_id="t", bash_command="sleep 1; echo $HOSTNAME >> {ledger}")\n')
    events: dict = {}
    assert final(run_tasks(executor, ["first"], events)["first"]) == S.SUCCESS
    ready_warm(executor, 1)
    from crossdock.models import TaskInstance

    ti = TaskInstance(dag_id="slow", task_id="t", run_id="r1", map_index=-1, try_number=1, executor_config={},
                      queue="kubernetes", priority_weight=1)
    # the slow DAG's pod has the same profile as the ledger's: only its task command differs
    executor.queue_command(ti, task_run_command(ti.key, subdir="DAGS_FOLDER/slow.py"))
    wait_until(lambda: (executor.pod_name(ti.key) or "").startswith("warm-"), step=executor.heartbeat,
               what="the slow try assigned to a warm pod")
    name = executor.pod_name(ti.key)
    executor._stop_watchers()  # the scheduler dies with the try running in its warm pod
    successor = KubernetesExecutor(api_client=tier.make_client())
    successor.job_id = "successor"
    successor.start()
    ti.queued_by_job_id = "warm-test"
    assert successor.try_adopt_task_instances([ti]) == []  # adopted, not run again
    outcome: dict = {}

    def step():
        successor.sync()
        outcome.update(successor.get_event_buffer())

    wait_until(lambda: outcome.get(ti.key, (None,))[0] == S.SUCCESS, step=step, what="the adopted try's success")
    assert ledger.read_text().split().count(name) == 1
    successor.end()


def test_a_running_pod_is_offered_only_once_it_says_on_its_log_that_it_is_ready(tier, tmp_path):
    """Running is not ready: a warm pod is still importing then, and a try handed to it would wait."""
    from crossdock.executors.kubernetes_warm_readiness import ReadinessFollower
    from crossdock.kubernetes.warm_profile import READY_LINE

    def pod(name, script):
        tier.core.create_namespaced_pod(tier.namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "base", "image": "crossdock/test:1", "command": ["sh", "-c", script]}]}})
        return ReadinessFollower(tier.core, name=name, namespace=tier.namespace, give_up_after=30)

    gate = tmp_path / "imports-done"
    slow = pod("slow-to-ready", f"echo importing; until [ -e {gate} ]; do sleep 0.05; done; "
                                f"echo '{READY_LINE}' >&2; sleep 30")
    never = pod("never-ready", "echo still importing; sleep 30")
    wait_until(lambda: tier.core.read_namespaced_pod("slow-to-ready", tier.namespace).status.phase == "Running",
               what="the pod running")
    wait_until(lambda: "importing" in tier.core.read_namespaced_pod_log("slow-to-ready", tier.namespace),
               what="the pod's first line")
    assert not slow.is_ready
    gate.touch()
    wait_until(lambda: slow.is_ready, what="the ready line read from the pod's log")
    assert not never.is_ready
    never.cancel()
