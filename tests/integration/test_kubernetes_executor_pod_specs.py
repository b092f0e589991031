"""Pod specs no API server or node can honour end as failed tries with the reason, never as waiting tasks.

Three layers catch them: the DAG parse (an import error naming the task and field), the
executor before it creates a pod (the try fails at once, no pod), and the node agent for
what only a node can judge (the pod ends Failed with ``CreateContainerConfigError``, which
the executor reports as the try's failure). The scheduler's retries apply to the tries.
"""

from __future__ import annotations

import pytest

from crossdock.database import create_session
from crossdock.executors.kubernetes_executor import KubernetesExecutor
from crossdock.kubernetes.local_runtime import start_local_runtime
from crossdock.state import TaskInstanceState as S

from kube_executor_support import (
    REJECT_IMAGES, Tier, configure, new_namespace, run_scheduler, run_states, write_dag,
)

BAD_SPECS = """
    with DAG("specs") as dag:
        BashOperator(task_id="lots", bash_command="true", retries=1, retry_delay=0,
                     executor_config={"pod_override": {"spec": {"containers": [
                         {"name": "base", "resources": {"limits": {"memory": "lots"}}}]}}})
        BashOperator(task_id="int_label", bash_command="true",
                     executor_config={"pod_override": {"metadata": {"labels": {"team": 7}}}})
        BashOperator(task_id="int_env", bash_command="true",
                     executor_config={"pod_override": {"spec": {"containers": [
                         {"name": "base", "env": [{"name": "RETRIES", "value": 3}]}]}}})
        BashOperator(task_id="fine", bash_command="true")
"""


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    runtime = start_local_runtime(state_dir=tmp_path_factory.mktemp("pod-runtime"), reject_images=REJECT_IMAGES)
    yield runtime
    runtime.stop()


@pytest.fixture
def tier(runtime):
    namespace = new_namespace(runtime.api_client)
    return Tier(name="local", make_client=runtime.api_client, namespace=namespace, url=runtime.url,
                store=runtime.api.store)


def _store_without_parse_checks(path, dag_id: str) -> None:
    """Store a DAG as a parse without the pod_override check would (one stored before it existed)."""
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.loader import load_dags_from_file
    from crossdock.dag.processor import ParseResult
    from crossdock.dag.serialization import serialize_dag
    from crossdock.scheduler.dag_runs import create_dag_run

    dags = load_dags_from_file(str(path))
    with create_session() as session:
        sync_parse_result_to_db(ParseResult(dags=[serialize_dag(dag) for dag in dags.values()]), session)
    with create_session() as session:
        create_dag_run(session, dag_id=dag_id, run_id="r1")


def test_bad_values_are_an_import_error_naming_task_and_field(tier, crossdock_home, monkeypatch):
    from crossdock.dag.processor import parse_dag_folder

    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    path = write_dag(folder, "specs", BAD_SPECS)
    result = parse_dag_folder(str(folder))
    assert result.dags == []
    error = result.import_errors[str(path)]
    assert "task 'lots': invalid pod_override: spec.containers[0].resources.limits[memory]: " \
           "Invalid value: \"lots\": quantities must match the regular expression" in error


@pytest.mark.parametrize("override, field", [
    ('{"metadata": {"labels": {"team": 7}}}', "pod_override.metadata.labels.team must be a string, not int 7"),
    ('{"spec": {"containers": [{"name": "base", "env": [{"name": "RETRIES", "value": 3}]}]}}',
     "pod_override.spec.containers[0].env[0].value must be a string, not int 3"),
    ('{"metadata": {"labels": {"team": "data science"}}}',
     "pod_override: metadata.labels['team']: Invalid value: \"data science\": a valid label must be"),
    ('{"spec": {"containers": [{"name": "base", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}}',
     "pod_override: spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or "
     "equal to cpu limit"),
])
def test_each_bad_value_is_named_at_parse_time(tier, crossdock_home, monkeypatch, override, field):
    from crossdock.dag.processor import parse_dag_folder

    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    path = write_dag(folder, "one_bad", f"""
        with DAG("one_bad") as dag:
            BashOperator(task_id="fine", bash_command="true")
            BashOperator(task_id="bad", bash_command="true", executor_config={{"pod_override": {override}}})
    """)
    error = parse_dag_folder(str(folder)).import_errors[str(path)]
    assert error.startswith("DagDefinitionError: DAG 'one_bad': task 'bad': invalid ")
    assert field in error


def test_executor_fails_a_try_with_a_bad_value_before_creating_a_pod(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    _store_without_parse_checks(write_dag(folder, "specs", BAD_SPECS), "specs")
    transitions = []
    run_scheduler(KubernetesExecutor(api_client=tier.make_client()), transitions=transitions)
    _, tis = run_states("specs")
    assert tis["fine"].state == S.SUCCESS
    assert tis["lots"].state == S.FAILED and tis["lots"].try_number == 2  # retried, failed the same way
    assert _ends(transitions, "lots") == [(1, S.UP_FOR_RETRY), (2, S.FAILED)]
    assert tis["lots"].failure_reason == (
        'invalid pod_override: pod: spec.containers[0].resources.limits[memory]: Invalid value: "lots": '
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    assert tis["int_label"].failure_reason == (
        "invalid pod_override: pod_override.metadata.labels.team must be a string, not int 7")
    assert tis["int_env"].failure_reason == (
        "invalid pod_override: pod_override.spec.containers[0].env[0].value must be a string, not int 3")
    assert sorted(pod["metadata"]["labels"]["task_id"] for pod in tier.pods()) == []  # "fine"'s pod is deleted


def test_pod_the_node_cannot_run_fails_the_try_with_the_nodes_reason(tier, crossdock_home, monkeypatch):
    folder = configure(monkeypatch, crossdock_home, tier.namespace)
    path = write_dag(folder, "mounts", """
        with DAG("mounts") as dag:
            BashOperator(task_id="mounted", bash_command="true", retries=1, retry_delay=0,
                         executor_config={"pod_override": {"spec": {
                             "volumes": [{"name": "data", "hostPath": {"path": "/srv"}}],
                             "containers": [{"name": "base", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}}})
    """)
    from crossdock.dag.processor import parse_dag_folder

    assert not parse_dag_folder(str(folder)).import_errors  # valid for any API server; only the node refuses
    _store_without_parse_checks(path, "mounts")
    transitions = []
    run_scheduler(KubernetesExecutor(api_client=tier.make_client()), transitions=transitions)
    _, tis = run_states("mounts")
    ti = tis["mounted"]
    assert ti.state == S.FAILED and ti.try_number == 2
    assert "CreateContainerConfigError" in ti.failure_reason
    assert 'volume "data": hostPath volumes are not supported by the local runtime' in ti.failure_reason
    assert _ends(transitions, "mounted") == [(1, S.UP_FOR_RETRY), (2, S.FAILED)]


def _ends(transitions, task_id: str) -> list[tuple[int, str]]:
    """(try, state) of each try's end: the scheduler's retry logic applied to the failure."""
    return [(t[1], t[3]) for t in transitions if t[0] == task_id and t[3] in (S.UP_FOR_RETRY, S.FAILED)]
