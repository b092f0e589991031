"""KubernetesExecutor end to end on the local pod runtime, through the official client.

Pods are real local processes started by the runtime's node agent; each runs
``crossdock tasks run ...`` exactly as a pod on a cluster would. The runtime's fault hooks
(HTTP errors, history compaction, killing a pod's process, holding pods Pending) make
the cluster misbehave on purpose.
"""

from __future__ import annotations

import shlex

import pytest
from sqlalchemy import update

from crossdock.database import create_session
from crossdock.executors.kubernetes_executor import KubernetesExecutor
from crossdock.kubernetes.local_runtime import start_local_runtime
from crossdock.kubernetes.pod_generator import WORKER_LABEL
from crossdock.models import Job, TaskInstance
from crossdock.models.base import utcnow
from crossdock.runner.command import task_run_command
from crossdock.runner.task_log import task_log_path_for_key
from crossdock.state import TaskInstanceState as S

from kube_executor_support import (
    REJECT_IMAGES, Tier, configure, new_namespace, parse_and_trigger, run_scheduler, run_states, wait_until,
    write_dag,
)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    runtime = start_local_runtime(state_dir=tmp_path_factory.mktemp("pod-runtime"), reject_images=REJECT_IMAGES)
    yield runtime
    runtime.stop()


@pytest.fixture
def tier(runtime):
    namespace = new_namespace(runtime.api_client)
    tier = Tier(name="local", make_client=runtime.api_client, namespace=namespace, url=runtime.url,
                store=runtime.api.store, agent=runtime.agent)
    yield tier
    tier.fault("clear")


def make_executor(tier: Tier) -> KubernetesExecutor:
    return KubernetesExecutor(api_client=tier.make_client())


# -- the happy path ----------------------------------------------------------------------------
def test_dag_runs_in_pods_through_the_scheduler(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    write_dag(folder, "pods", """
        def boom():
            raise ValueError("boom in a pod")

        with DAG("pods") as dag:
            first = BashOperator(task_id="first", bash_command="echo hello-from-pod", queue="kubernetes")
            second = PythonOperator(task_id="second", python_callable=lambda: print("second ran"))
            broken = PythonOperator(task_id="broken", python_callable=boom, retries=1, retry_delay=0)
            first >> second
    """)
    parse_and_trigger(folder, "pods")
    executor = make_executor(tier)
    transitions = []
    run_scheduler(executor, transitions=transitions)

    state, tis = run_states("pods")
    assert state == "failed"
    assert tis["first"].state == S.SUCCESS and tis["second"].state == S.SUCCESS
    assert tis["broken"].state == S.FAILED and tis["broken"].try_number == 2
    assert tis["broken"].failure_reason.startswith("ValueError: boom in a pod (pod pods-broken-")
    assert "container base Error, exit code 1" in tis["broken"].failure_reason
    # the first try failed the same way and was retried
    assert ("broken", 1, S.RUNNING, S.UP_FOR_RETRY) in [t[:4] for t in transitions]
    # each try ran in a pod of its own, named in the task instance
    assert tis["first"].hostname.startswith("pods-first-") and tis["first"].hostname != tis["second"].hostname
    # a pod that ran and ended between two scheduler reads still reported that it ran
    for ti in (tis["first"], tis["second"]):
        assert ti.hostname and ti.start_date > ti.queued_dttm
    first_log = task_log_path_for_key(tis["first"].key).read_text()
    # The pod shares this log folder and copied its output to its container log as well:
    # what the task printed is in the file once, not once more from the container log.
    assert first_log.splitlines().count("hello-from-pod") == 1, first_log
    # succeeded pods are deleted, failed ones kept (delete_worker_pods_on_failure = False)
    remaining = sorted(pod["metadata"]["labels"]["task_id"] for pod in tier.pods())
    assert remaining == ["broken", "broken"]


def test_bad_pod_override_fails_that_task_only_with_a_readable_reason(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    write_dag(folder, "override", """
        with DAG("override") as dag:
            BashOperator(task_id="good", bash_command="true")
            BashOperator(task_id="typo", bash_command="true",
                         executor_config={"pod_override": {"spec": {"containers": [
                             {"name": "base", "resources": {"limits": {"memory": "1Gi"}}, "imagePullPolicyy": "x"}]}}})
            BashOperator(task_id="wrong_type", bash_command="true",
                         executor_config={"pod_override": {"spec": {"containers": "base"}}})
    """)
    # The parse already refuses the file, naming the task and the field ...
    from crossdock.dag.processor import parse_dag_folder

    error = parse_dag_folder(str(folder)).import_errors[str(folder / "override.py")]
    assert "task 'typo': invalid pod_override.spec.containers[0] has unknown field 'imagePullPolicyy'" in error
    # ... and a try that reaches the executor all the same (a DAG stored before the check
    # existed, stored here without it) fails alone.
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.loader import load_dags_from_file
    from crossdock.dag.processor import ParseResult
    from crossdock.dag.serialization import serialize_dag
    from crossdock.scheduler.dag_runs import create_dag_run

    dags = load_dags_from_file(str(folder / "override.py"))
    with create_session() as session:
        sync_parse_result_to_db(ParseResult(dags=[serialize_dag(dag) for dag in dags.values()]), session)
    with create_session() as session:
        create_dag_run(session, dag_id="override", run_id="r1")
    run_scheduler(make_executor(tier))
    _, tis = run_states("override")
    assert tis["good"].state == S.SUCCESS
    assert tis["typo"].state == S.FAILED
    assert tis["typo"].failure_reason.startswith(
        "invalid pod_override: pod_override.spec.containers[0] has unknown field 'imagePullPolicyy'")
    assert tis["wrong_type"].failure_reason == (
        "invalid pod_override: pod_override.spec.containers must be a list, not str 'base'")
    assert [pod["metadata"]["labels"]["task_id"] for pod in tier.pods()] == []  # no pod for the bad ones


def test_unpullable_image_fails_fast_and_its_pod_is_removed(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    write_dag(folder, "image", """
        with DAG("image") as dag:
            BashOperator(task_id="pull", bash_command="true",
                         executor_config={"pod_override": {"spec": {"containers": [
                             {"name": "base", "image": "registry.example/missing:does-not-exist"}]}}})
    """)
    parse_and_trigger(folder, "image")
    run_scheduler(make_executor(tier))  # would hang (a pod Pending forever) if it did not fail fast
    _, tis = run_states("image")
    assert tis["pull"].state == S.FAILED
    assert "container base ErrImagePull" in tis["pull"].failure_reason
    assert "registry.example/missing:does-not-exist" in tis["pull"].failure_reason
    wait_until(lambda: tier.pods() == [], what="the pod to go")  # a pod that can never start is not left Pending


def test_pod_killed_mid_task_fails_with_its_exit_code_and_is_retried(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    marker = crossdock_home / "first-try-started"
    write_dag(folder, "killed", f"""
        def work():
            if not os.path.exists({str(marker)!r}):
                open({str(marker)!r}, "w").close()
                time.sleep(60)
            print("second try done")

        with DAG("killed") as dag:
            PythonOperator(task_id="victim", python_callable=work, retries=1, retry_delay=0)
    """)
    parse_and_trigger(folder, "killed")
    executor = make_executor(tier)
    killed = []

    def kill_when_started(job):
        if marker.exists() and not killed:
            (pod,) = [p for p in tier.pods() if p["status"].get("phase") == "Running"]
            killed.append(tier.kill(pod["metadata"]["name"]))

    transitions = []
    run_scheduler(executor, on_loop=kill_when_started, transitions=transitions)
    assert killed == [True]
    _, tis = run_states("killed")
    assert tis["victim"].state == S.SUCCESS and tis["victim"].try_number == 2
    (retry,) = [t for t in transitions if t[3] == S.UP_FOR_RETRY]
    assert "container base Error, exit code 137" in retry[4]


# -- creation errors ------------------------------------------------------------------------------
def test_api_errors_on_create_are_retried_and_each_try_gets_exactly_one_pod(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace, delete_worker_pods="False",
                       task_publish_max_retries=3)
    write_dag(folder, "flaky_api", """
        with DAG("flaky_api") as dag:
            for n in range(3):
                BashOperator(task_id=f"t{n}", bash_command="true")
    """)
    parse_and_trigger(folder, "flaky_api")
    path = f"/api/v1/namespaces/{tier.namespace}/pods"
    tier.fault("fail-next", {"count": 1, "code": 429, "retryAfter": 1, "method": "POST", "pathContains": path})
    tier.fault("fail-next", {"count": 2, "code": 500, "method": "POST", "pathContains": path})
    tier.fault("fail-next", {"count": 1, "code": 503, "method": "POST", "pathContains": path})
    executor = make_executor(tier)
    run_scheduler(executor)
    _, tis = run_states("flaky_api")
    assert {t: (ti.state, ti.try_number) for t, ti in tis.items()} == {
        "t0": (S.SUCCESS, 1), "t1": (S.SUCCESS, 1), "t2": (S.SUCCESS, 1)}
    pods = tier.pods()
    assert sorted(p["metadata"]["labels"]["task_id"] for p in pods) == ["t0", "t1", "t2"]
    assert executor.api_calls.by_method["POST"] == 3 + 4  # three pods, four refused attempts


def test_creation_that_cannot_succeed_fails_the_try_with_the_api_message(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace, multi_namespace_mode="True")
    write_dag(folder, "nowhere", """
        with DAG("nowhere") as dag:
            BashOperator(task_id="lost", bash_command="true",
                         executor_config={"pod_override": {"metadata": {"namespace": "no-such-namespace"}}})
    """)
    parse_and_trigger(folder, "nowhere")
    executor = make_executor(tier)
    run_scheduler(executor)
    _, tis = run_states("nowhere")
    assert tis["lost"].state == S.FAILED and tis["lost"].try_number == 1
    assert "could not be created: 404" in tis["lost"].failure_reason
    assert 'namespaces "no-such-namespace" not found' in tis["lost"].failure_reason
    assert executor.api_calls.by_method["POST"] == 1  # a 404 is not retried


def test_override_namespace_outside_single_namespace_mode_is_refused(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    write_dag(folder, "elsewhere", """
        with DAG("elsewhere") as dag:
            BashOperator(task_id="t", bash_command="true",
                         executor_config={"pod_override": {"metadata": {"namespace": "other"}}})
    """)
    parse_and_trigger(folder, "elsewhere")
    run_scheduler(make_executor(tier))
    _, tis = run_states("elsewhere")
    assert "set multi_namespace_mode to use other namespaces" in tis["t"].failure_reason


# -- executor-level behaviour (no scheduler) ---------------------------------------------------------
def _ti(dag_id, task_id, *, executor_config=None, try_number=1):
    return TaskInstance(dag_id=dag_id, task_id=task_id, run_id="r1", map_index=-1, try_number=try_number,
                        executor_config=executor_config or {}, queue="kubernetes", priority_weight=1)


def _pump(executor, events, *, until, what):
    def step():
        executor.heartbeat()
        events.update(executor.get_event_buffer())

    return wait_until(lambda: until(events), step=step, what=what)


def test_only_crossdock_commands_run_unless_validation_is_off(tier, crossdock_home, monkeypatch):
    configure(monkeypatch, crossdock_home, tier.namespace)
    executor = make_executor(tier)
    executor.start()
    ti = _ti("adhoc", "python")
    command = ["python", "-c", "print('not a task')"]
    executor.queue_command(ti, command)
    events = {}
    _pump(executor, events, until=lambda e: ti.key in e, what="refusal")
    state, reason = events[ti.key]
    assert state == S.FAILED and "refusing to run" in reason
    assert tier.pods() == [] and ti.key not in executor.running
    executor.end()

    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__VALIDATE_COMMANDS", "False")
    from crossdock.configuration import conf
    conf.reload()
    executor = make_executor(tier)
    executor.job_id = "adhoc"
    executor.start()
    executor.queue_command(ti, ["python3", "-c", "print('ran anyway')"])
    events = {}
    _pump(executor, events, until=lambda e: e.get(ti.key, (None,))[0] in (S.SUCCESS, S.FAILED), what="pod")
    assert events[ti.key][0] == S.SUCCESS
    executor.end()


def test_pod_failing_before_its_task_started_is_replaced_without_spending_a_retry(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    write_dag(folder, "evicted", """
        with DAG("evicted") as dag:
            BashOperator(task_id="t", bash_command="echo fine")
    """)
    executor = make_executor(tier)
    executor.start()
    ti = _ti("evicted", "t")
    tier.fault("hold-pending", {"hold": True})
    try:
        executor.queue_command(ti, task_run_command(ti.key, subdir="DAGS_FOLDER/evicted.py"))
        events = {}
        _pump(executor, events, until=lambda e: ti.key in e, what="pod creation")
        first = executor.pod_name(ti.key)
        assert events[ti.key] == (S.QUEUED, first)
        # the node evicts the pod before it ever ran (as a kubelet reports it)
        tier.core.patch_namespaced_pod_status(first, tier.namespace, {"status": {
            "phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}})
        wait_until(lambda: executor.pod_name(ti.key) not in (None, first), step=executor.sync,
                   what="a replacement pod")
    finally:
        tier.fault("hold-pending", {"hold": False})
    events = {}
    _pump(executor, events, until=lambda e: e.get(ti.key, (None,))[0] in (S.SUCCESS, S.FAILED), what="outcome")
    assert events[ti.key] == (S.SUCCESS, None)
    assert not tier.pod_exists(first)
    executor.end()


def test_revoke_deletes_the_pod_and_running_log_is_read_from_the_pod(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    write_dag(folder, "slow", """
        with DAG("slow") as dag:
            BashOperator(task_id="t", bash_command="echo started-slow; sleep 60")
    """)
    executor = make_executor(tier)
    executor.start()
    ti = _ti("slow", "t")
    executor.queue_command(ti, task_run_command(ti.key, subdir="DAGS_FOLDER/slow.py"))
    events = {}
    _pump(executor, events, until=lambda e: e.get(ti.key, (None,))[0] == S.RUNNING, what="running")
    name = executor.pod_name(ti.key)
    wait_until(lambda: "started-slow" in task_log_path_for_key(ti.key).read_text()
               if task_log_path_for_key(ti.key).exists() else False, what="task output")
    messages, lines = executor.get_task_log(ti, 1)
    assert messages == [f"log of running pod {tier.namespace}/{name}"]
    assert any("started-slow" in line for line in lines), lines  # what `kubectl logs` shows
    executor.revoke_task(ti=ti)
    assert ti.key not in executor.running
    wait_until(lambda: not tier.pod_exists(name), what="pod deletion")
    messages, lines = executor.get_task_log(ti, 1)
    assert messages[0].startswith("log file ") and any("started-slow" in line for line in lines)
    executor.end()


# -- logs survive pods ---------------------------------------------------------------------------------------
def test_log_is_saved_to_the_task_log_before_the_pod_is_deleted(tier, crossdock_home, monkeypatch):
    """The pod writes its own log file where the scheduler cannot see it (as on a cluster);
    the task log the scheduler side reads must still hold what the pod printed."""
    pod_private = crossdock_home / "pod-filesystem"
    folder = configure(monkeypatch, crossdock_home, tier.namespace, delete_worker_pods_on_failure="True")
    write_dag(folder, "logs", f"""
        def fail():
            print("printed inside the pod")
            raise RuntimeError("visible after the pod is gone")

        with DAG("logs") as dag:
            PythonOperator(task_id="t", python_callable=fail, executor_config={{"pod_override": {{"spec": {{
                "containers": [{{"name": "base", "env": [
                    {{"name": "CROSSDOCK__LOGGING__BASE_LOG_FOLDER", "value": {str(pod_private)!r}}}]}}]}}}}}})
    """)
    parse_and_trigger(folder, "logs")
    run_scheduler(make_executor(tier))
    _, tis = run_states("logs")
    ti = tis["t"]
    assert ti.state == S.FAILED
    assert not tier.pod_exists(ti.hostname)
    saved = task_log_path_for_key(ti.key).read_text()
    assert f"container log of pod {tier.namespace}/{ti.hostname}" in saved
    assert "crossdock: task failed: RuntimeError: visible after the pod is gone" in saved
    # the container log carried the task's own output and traceback, not only the runner's last line
    assert "printed inside the pod" in saved
    assert 'raise RuntimeError("visible after the pod is gone")' in saved
    assert ti.failure_reason.startswith("RuntimeError: visible after the pod is gone (pod ")


# -- the watch --------------------------------------------------------------------------------------------------
def test_watch_cut_and_history_compacted_relists_and_loses_nothing(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    write_dag(folder, "blind", """
        with DAG("blind") as dag:
            for n in range(3):
                BashOperator(task_id=f"short{n}", bash_command="sleep 0.5")
            BashOperator(task_id="long", bash_command="sleep 60")
    """)
    executor = make_executor(tier)
    executor.start()
    tis = [_ti("blind", f"short{n}") for n in range(3)] + [_ti("blind", "long")]
    for ti in tis:
        executor.queue_command(ti, task_run_command(ti.key, subdir="DAGS_FOLDER/blind.py"))
    events = {}
    _pump(executor, events, until=lambda e: all(e.get(ti.key, (None,))[0] == S.RUNNING for ti in tis),
          what="all pods running")
    (watcher,) = executor.watchers.values()
    lists_before = watcher.lists
    long_pod = executor.pod_name(tis[-1].key)
    # Cut the watch and keep it from reconnecting while pods finish and one is deleted.
    tier.fault("fail-next", {"count": 100000, "code": 503, "method": "GET",
                             "pathContains": f"/api/v1/namespaces/{tier.namespace}/pods"})
    watcher.interrupt()
    store = tier.store
    wait_until(lambda: all(_phase(store, tier.namespace, executor.pod_name(ti.key)) == "Succeeded"
                           for ti in tis[:3]), what="short pods to finish unwatched")
    tier.core.delete_namespaced_pod(long_pod, tier.namespace, grace_period_seconds=0)
    tier.fault("compact")
    tier.fault("clear")
    events = {}
    _pump(executor, events, until=lambda e: all(ti.key in e and e[ti.key][0] in (S.SUCCESS, S.FAILED)
                                                for ti in tis), what="every outcome")
    assert watcher.lists > lists_before  # 410 Gone led to a fresh list
    assert [events[ti.key][0] for ti in tis[:3]] == [S.SUCCESS] * 3
    assert events[tis[-1].key][0] == S.FAILED and "vanished" in events[tis[-1].key][1]
    executor.end()


def _phase(store, namespace, name):
    """A pod's phase read from the runtime's store directly (the API is made to fail meanwhile)."""
    items, _ = store.list("pods", namespace, lambda obj: obj["metadata"]["name"] == name)
    return items[0]["status"].get("phase") if items else None


# -- adoption ----------------------------------------------------------------------------------------------------
def test_new_scheduler_adopts_the_pods_of_a_killed_one(tier, crossdock_home, monkeypatch):
    from crossdock.scheduler.scheduler_job import SchedulerJob

    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    gate = crossdock_home / "gate"
    # The short task must not end while the first scheduler still loops: that scheduler
    # would record its success and delete its pod, leaving nothing to finish unwatched.
    unwatched_gate = crossdock_home / "unwatched-gate"
    wait_for_unwatched_gate = f"until [ -e {shlex.quote(str(unwatched_gate))} ]; do sleep 0.05; done"
    write_dag(folder, "adopt", f"""
        def wait_for_gate():
            while not os.path.exists({str(gate)!r}):
                time.sleep(0.05)
            print("gate opened")

        with DAG("adopt") as dag:
            PythonOperator(task_id="running", python_callable=wait_for_gate)
            BashOperator(task_id="finishes_unwatched", bash_command={wait_for_unwatched_gate!r})
    """)
    parse_and_trigger(folder, "adopt")
    first = make_executor(tier)
    crashed = SchedulerJob(executors=[first], parse_dags=False)
    crashed.start()
    wait_until(lambda: len(tier.pods()) == 2 and all(p["status"].get("phase") == "Running" for p in tier.pods()),
               step=crashed.loop_once, what="both pods to start")
    crashed.loop_once()
    pods_before = {p["metadata"]["labels"]["task_id"]: p["metadata"]["name"] for p in tier.pods()}
    # The scheduler dies: no shutdown, its watchers stop, its heartbeat goes stale.
    first._stop_watchers()
    with create_session() as session:
        session.execute(update(Job).where(Job.id == crashed.job_id).values(latest_heartbeat=utcnow().replace(year=2000)))
    unwatched_gate.touch()
    wait_until(lambda: [p["metadata"]["name"] for p in tier.pods() if p["status"].get("phase") == "Succeeded"]
               == [pods_before["finishes_unwatched"]],
               what="the short task to finish while no scheduler watches")
    gate.touch()

    second = make_executor(tier)
    job = run_scheduler(second)
    assert job.job_id != crashed.job_id
    state, tis = run_states("adopt")
    assert state == "success"
    assert {t: (ti.state, ti.try_number) for t, ti in tis.items()} == {
        "running": (S.SUCCESS, 1), "finishes_unwatched": (S.SUCCESS, 1)}
    assert tis["running"].hostname == pods_before["running"]  # same pod, not a new try
    assert "gate opened" in task_log_path_for_key(tis["running"].key).read_text()
    assert tier.pods() == []  # adopted pods were cleaned up after their outcome was recorded
    assert second.api_calls.by_method.get("POST", 0) == 0  # no pod was created again


def test_pods_of_a_live_scheduler_are_not_adopted(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    write_dag(folder, "sibling", """
        with DAG("sibling") as dag:
            BashOperator(task_id="t", bash_command="sleep 60")
    """)
    owner = make_executor(tier)
    owner.job_id = 41
    owner.start()
    ti = _ti("sibling", "t")
    ti.queued_by_job_id = 41
    owner.queue_command(ti, task_run_command(ti.key, subdir="DAGS_FOLDER/sibling.py"))
    _pump(owner, {}, until=lambda e: owner.pod_name(ti.key) and tier.pods(), what="pod")
    other = make_executor(tier)
    other.job_id = 42
    other.start()
    # A try of another (dead) job with no pod: not adopted, handed back for a reset.
    lost = _ti("sibling", "gone")
    lost.queued_by_job_id = 40
    assert other.try_adopt_task_instances([lost]) == [lost]
    (pod,) = tier.pods()
    assert pod["metadata"]["labels"][WORKER_LABEL] == "41"
    owner.revoke_task(ti=ti)
    owner.end()
    other.end()


# -- crossdock kubernetes cleanup-pods --------------------------------------------------------------------
def test_cleanup_pods_deletes_finished_worker_pods_only(tier, runtime, crossdock_home, monkeypatch, capsys):
    import argparse

    from crossdock.cli.errors import CliError
    from crossdock.cli.kubernetes_pods_command import cleanup_pods

    configure(monkeypatch, crossdock_home, tier.namespace, config_file=str(runtime.kubeconfig_path))
    core = tier.core

    def create(name, command, *, worker=True, image="crossdock-worker:latest"):
        labels = {"kubernetes_executor": "True"} if worker else {}
        core.create_namespaced_pod(tier.namespace, {
            "metadata": {"name": name, "labels": labels},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "base", "image": image, "command": command}]},
        }, _preload_content=False)

    create("done", ["true"])
    create("broke", ["false"])
    create("busy", ["sleep", "60"])
    create("pulling", ["true"], image="x:does-not-exist")
    create("not-ours", ["true"], worker=False)

    def phases():
        return {p["metadata"]["name"]: p["status"].get("phase") for p in tier.pods()}

    wait_until(lambda: phases() == {"done": "Succeeded", "broke": "Failed", "busy": "Running",
                                    "pulling": "Pending", "not-ours": "Succeeded"}, what="pod phases")
    with pytest.raises(CliError, match="at least 5"):
        cleanup_pods(argparse.Namespace(namespace=None, min_pending_minutes=4))
    assert cleanup_pods(argparse.Namespace(namespace=None, min_pending_minutes=5)) == 0
    out = capsys.readouterr().out
    assert "deleted pod" in out and "(Succeeded)" in out and "(Failed)" in out and "2 pod(s) deleted" in out
    wait_until(lambda: set(phases()) == {"busy", "pulling", "not-ours"}, what="finished pods to go")
    tier.delete_all_pods()
