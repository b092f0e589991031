"""DAGs as JSON: the round trip the scheduler relies on, without importing user code."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from crossdock import DAG, BashOperator, PythonOperator
from crossdock.dag import DagDefinitionError, TaskNotFound
from crossdock.dag.serialization import SerializedDAG, dag_hash, serialize_dag


def build_dag(folder=None):
    dag = DAG("roundtrip", schedule="*/5 * * * *", start_date=datetime(2024, 3, 1, 6, 30),
              catchup=True, max_active_runs=2, max_active_tasks=7, tags=["etl", "nightly"],
              description="a DAG to serialize")
    if folder is not None:
        dag.fileloc = str(folder / "sub" / "roundtrip.py")
    with dag:
        extract = BashOperator("extract", "echo e", queue="default", priority_weight=2,
                               retries=2, retry_delay=timedelta(seconds=45),
                               retry_exponential_backoff=True, max_retry_delay=600,
                               execution_timeout=timedelta(minutes=5), pool="etl", pool_slots=2)
        pod = PythonOperator("pod", print, queue="kubernetes", executor_config={
            "pod_override": {"spec": {"containers": [{"name": "base", "image": "python:3.11"}]}}},
            executor="KubernetesExecutor", trigger_rule="all_done")
        load = BashOperator("load", "echo l")
        extract >> [pod, load]
    return dag


def test_round_trip_keeps_every_field_the_scheduler_reads(tmp_path, monkeypatch):
    from crossdock.configuration import conf

    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(tmp_path))
    conf.reload()
    data = serialize_dag(build_dag(tmp_path))
    data = json.loads(json.dumps(data))  # what really comes back from the database
    dag = SerializedDAG.from_dict(data)

    assert dag.dag_id == "roundtrip"
    assert dag.fileloc == str(tmp_path / "sub" / "roundtrip.py")
    assert dag.relative_fileloc == "sub/roundtrip.py"
    assert dag.subdir == "DAGS_FOLDER/sub/roundtrip.py"
    assert dag.schedule == "*/5 * * * *"
    assert dag.start_date == datetime(2024, 3, 1, 6, 30, tzinfo=timezone.utc)
    assert (dag.catchup, dag.max_active_runs, dag.max_active_tasks) == (True, 2, 7)
    assert dag.tags == ["etl", "nightly"] and dag.description == "a DAG to serialize"
    assert [task.task_id for task in dag.roots] == ["extract"]

    extract = dag.tasks["extract"]
    assert extract.task_type == "BashOperator"
    assert (extract.queue, extract.pool, extract.pool_slots) == ("default", "etl", 2)
    assert extract.priority_weight == 2 + 1 + 1  # effective weight, downstream rule
    assert (extract.retries, extract.retry_delay, extract.retry_exponential_backoff) == (2, 45.0, True)
    assert (extract.max_retry_delay, extract.execution_timeout) == (600.0, 300.0)
    assert extract.downstream_task_ids == frozenset({"pod", "load"})
    assert extract.upstream_task_ids == frozenset()

    pod = dag.get_task("pod")
    assert pod.queue == "kubernetes" and pod.executor == "KubernetesExecutor"
    assert pod.trigger_rule == "all_done" and pod.upstream_task_ids == frozenset({"extract"})
    assert pod.executor_config["pod_override"]["spec"]["containers"][0]["image"] == "python:3.11"
    assert pod.execution_timeout is None and pod.max_retry_delay is None
    with pytest.raises(TaskNotFound):
        dag.get_task("missing")


def test_file_outside_the_dags_folder_keeps_its_absolute_path(tmp_path):
    dag = DAG("elsewhere")
    dag.fileloc = str(tmp_path / "x.py")
    serialized = SerializedDAG.from_dict(serialize_dag(dag))
    assert serialized.relative_fileloc == str(tmp_path / "x.py")
    assert serialized.subdir == str(tmp_path / "x.py")


def test_schedules_serialize_to_strings():
    assert serialize_dag(DAG("none"))["schedule"] is None
    assert serialize_dag(DAG("preset", schedule="@daily"))["schedule"] == "@daily"
    assert serialize_dag(DAG("delta", schedule=timedelta(minutes=90)))["schedule"] == "timedelta:5400"
    assert serialize_dag(DAG("frac", schedule=timedelta(seconds=1.5)))["schedule"] == "timedelta:1.5"
    assert serialize_dag(DAG("nostart"))["start_date"] is None


def test_kubernetes_models_in_pod_override_become_api_dicts():
    from kubernetes.client import models as k8s

    pod = k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(
        name="base", resources=k8s.V1ResourceRequirements(requests={"cpu": "100m", "memory": "64Mi"}))]))
    with DAG("k8s") as dag:
        PythonOperator("t", print, queue="kubernetes", executor_config={"pod_override": pod})
    config = serialize_dag(dag)["tasks"]["t"]["executor_config"]
    json.dumps(config)
    assert config == {"pod_override": {"spec": {"containers": [
        {"name": "base", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}


def test_unserializable_executor_config_names_dag_and_task():
    with DAG("weird") as dag:
        PythonOperator("t", print, executor_config={"thing": object()})
    with pytest.raises(DagDefinitionError, match="'weird', task 't'"):
        serialize_dag(dag)


def test_hash_is_stable_and_changes_with_the_dag():
    first = serialize_dag(build_dag())
    again = serialize_dag(build_dag())
    assert dag_hash(first) == dag_hash(again) == SerializedDAG.from_dict(first).dag_hash
    reordered = json.loads(json.dumps(first, sort_keys=False))
    reordered["tasks"] = dict(reversed(list(reordered["tasks"].items())))
    assert dag_hash(reordered) == dag_hash(first)
    changed = build_dag()
    changed.get_task("load").retries = 5
    assert dag_hash(serialize_dag(changed)) != dag_hash(first)


def test_retry_delay_with_exponential_backoff_is_capped():
    task = SerializedDAG.from_dict(serialize_dag(build_dag())).tasks["extract"]
    assert [task.retry_delay_for(n) for n in (1, 2, 3, 5, 10)] == [45.0, 90.0, 180.0, 600.0, 600.0]
    plain = SerializedDAG.from_dict(serialize_dag(build_dag())).tasks["load"]
    assert plain.retry_delay_for(4) == 300.0


def test_malformed_data_gives_a_readable_error():
    with pytest.raises(ValueError, match="serialized DAG 'broken' is malformed"):
        SerializedDAG.from_dict({"dag_id": "broken", "fileloc": "/x.py"})


def test_serialized_weights_match_each_tasks_own_computation():
    rules = ["downstream", "upstream", "absolute"]
    with DAG("mixed") as dag:
        tasks = [BashOperator(f"t{n}", "true", priority_weight=n % 5 + 1, weight_rule=rules[n % 3])
                 for n in range(30)]
        for n in range(1, 30):
            tasks[n // 2] >> tasks[n]  # a binary tree...
            if n > 4 and n % 4 == 0:
                tasks[n - 4] >> tasks[n]  # ...with some diamonds
    data = serialize_dag(dag)
    assert {task_id: task["priority_weight"] for task_id, task in data["tasks"].items()} == {
        task.task_id: task.priority_weight_total for task in dag.tasks}
