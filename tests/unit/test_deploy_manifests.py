"""``crossdock deploy workers`` and ``crossdock deploy keda``: the objects [worker_queues] calls for.

Worker Deployments are judged by kubernetes-validate (strict: an unknown field is an
error). A ScaledObject is KEDA's custom resource, which kubernetes-validate does not
know, so :func:`keda_problems` checks what these objects rely on against KEDA's
documented ScaledObject and prometheus-trigger specification (keda.sh/docs/2.16
reference/scaledobject-spec and scalers/prometheus): the fields, their types (trigger
``metadata`` is a map of strings; replica counts and seconds are integers), the required
ones, and min ≤ max. It is our reading of those documents, not KEDA's own CRD schema.
"""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout

import kubernetes_validate
import pytest
import yaml

from crossdock.cli.main import main
from crossdock.configuration import ConfigError, conf
from crossdock.deploy.keda_manifests import desired_workers_query
from crossdock.monitoring.queue_status import desired_workers
from crossdock.monitoring.worker_deployments import deployment_name
from crossdock.monitoring.worker_queues import WorkerQueues

K8S_VERSION = "1.30"
QUEUES = {
    "default": {"min_workers": 1, "max_workers": 8, "max_tasks_per_worker": 8,
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}},
    "burst": {"min_workers": 0, "max_workers": 4, "max_tasks_per_worker": 4},
    "high_memory": {"max_workers": 2, "resources": {"limits": {"memory": "16Gi"}}},
}
SECRET_VALUES = ("hunter2", "s3cret-broker", "backend-pw")


@pytest.fixture
def configured(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__WORKER_QUEUES__QUEUES", json.dumps(QUEUES))
    monkeypatch.setenv("CROSSDOCK__WORKER_QUEUES__DRAIN_GRACE", "900")
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__NAMESPACE", "jobs")
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__WORKER_CONTAINER_REPOSITORY", "registry.example/crossdock")
    monkeypatch.setenv("CROSSDOCK__KUBERNETES_EXECUTOR__WORKER_CONTAINER_TAG", "1.2.3")
    # What a real install has in its environment: none of it may reach the YAML.
    monkeypatch.setenv("CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN", "postgresql://crossdock:hunter2@db/crossdock")
    monkeypatch.setenv("CROSSDOCK__CELERY__BROKER_URL", "redis://:s3cret-broker@redis:6379/0")
    monkeypatch.setenv("CROSSDOCK__CELERY__RESULT_BACKEND", "db+postgresql://results:backend-pw@db/results")
    conf.reload()


def run_cli(*argv: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert main(list(argv)) == 0
    return out.getvalue(), err.getvalue()


def refused(*argv: str) -> str:
    """What the CLI says (one line, exit 1) when it refuses ``argv``."""
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(list(argv)) == 1
    return err.getvalue()


def by_queue(documents) -> dict:
    return {doc["metadata"]["annotations"]["crossdock.io/queue"]: doc for doc in documents}


# -- worker Deployments ----------------------------------------------------------------------
def test_every_queue_gets_a_valid_worker_deployment_running_that_queue(configured):
    printed, _ = run_cli("deploy", "workers", "-o", "yaml")
    deployments = by_queue(yaml.safe_load_all(printed))
    assert sorted(deployments) == ["burst", "default", "high_memory"]
    for queue, deployment in deployments.items():
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
        assert deployment["metadata"]["name"] == deployment_name(queue)
        assert deployment["metadata"]["namespace"] == "jobs"
        spec = deployment["spec"]
        assert "replicas" not in spec  # the autoscaler's to set; re-applying must not undo it
        assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
        pod = spec["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == 900  # drain_grace
        assert pod["automountServiceAccountToken"] is False
        [container] = pod["containers"]
        assert container["image"] == "registry.example/crossdock:1.2.3"
        slots = str(WorkerQueues.from_config().spec_for(queue).max_tasks_per_worker)
        assert container["command"] == ["crossdock", "celery", "worker", "-q", queue, "--concurrency", slots,
                                        "--celery-hostname", "celery@$(POD_NAME)"]
        pod_name = next(e for e in container["env"] if e["name"] == "POD_NAME")
        assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert deployments["default"]["spec"]["template"]["spec"]["containers"][0]["resources"] == \
        QUEUES["default"]["resources"]
    assert "resources" not in deployments["burst"]["spec"]["template"]["spec"]["containers"][0]
    assert deployment_name("high_memory") != deployment_name("high-memory")


def test_no_secret_value_reaches_the_manifests_and_workers_get_no_database(configured):
    for command in ("workers", "keda"):
        for output in ("yaml", "json"):
            printed, _ = run_cli("deploy", command, "-o", output)
            for secret in SECRET_VALUES:
                assert secret not in printed, (command, output, secret)
    printed, _ = run_cli("deploy", "workers", "-o", "json")
    listing = json.loads(printed)
    assert listing["kind"] == "List" and len(listing["items"]) == 3
    for deployment in listing["items"]:
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
        assert from_secret == {
            "CROSSDOCK__CELERY__BROKER_URL": {"name": "crossdock-secrets", "key": "celery-broker-url"},
            "CROSSDOCK__CELERY__RESULT_BACKEND": {"name": "crossdock-secrets", "key": "celery-result-backend"}}
        assert not [e for e in env if "DATABASE" in e["name"]]  # design principle 1
        assert all("value" not in e or not e["value"].startswith(("redis:", "postgres", "db+")) for e in env)


def test_with_replicas_writes_min_workers_and_queue_selects_one(configured):
    printed, _ = run_cli("deploy", "workers", "--with-replicas", "-q", "burst", "--secret", "mine")
    [deployment] = yaml.safe_load_all(printed)
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    assert deployment["spec"]["replicas"] == 0
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})} == {"mine"}


def test_a_queue_the_config_does_not_list_gets_the_defaults_and_a_note(configured):
    printed, noted = run_cli("deploy", "workers", "-q", "adhoc")
    [deployment] = yaml.safe_load_all(printed)
    assert "'adhoc' is not in [worker_queues] queues" in noted
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"][4] == "adhoc"


def test_no_queues_at_all_is_a_readable_error():
    assert "no queues: list them in [worker_queues] queues" in refused("deploy", "workers")


def test_bad_resources_name_the_queue_and_field(monkeypatch):
    monkeypatch.setenv("CROSSDOCK__WORKER_QUEUES__QUEUES",
                       json.dumps({"big": {"resources": {"limits": {"memory": "lots"}}}}))
    conf.reload()
    said = refused("deploy", "workers")
    assert "queue 'big' resources: limits[memory]: Invalid value: \"lots\"" in said


def test_deployment_names_are_dns_labels_or_a_config_error(monkeypatch):
    long_queue = "q" * 80
    assert len(deployment_name(long_queue)) <= 63
    assert deployment_name(long_queue) != deployment_name("q" * 81)
    assert deployment_name("Reports.Daily") != deployment_name("reports-daily")
    assert deployment_name("default", template="workers-{queue}") == "workers-default"
    with pytest.raises(ConfigError, match="must contain {queue}"):
        deployment_name("default", template="workers")
    with pytest.raises(ConfigError, match="not a DNS-1123 label"):
        deployment_name("default", template="Workers_{queue}")


# -- KEDA ScaledObjects ---------------------------------------------------------------------
SCALED_OBJECT_SPEC = {  # field: (type, required)
    "scaleTargetRef": (dict, True), "pollingInterval": (int, False), "cooldownPeriod": (int, False),
    "initialCooldownPeriod": (int, False), "idleReplicaCount": (int, False), "minReplicaCount": (int, False),
    "maxReplicaCount": (int, False), "fallback": (dict, False), "advanced": (dict, False), "triggers": (list, True),
}
TRIGGER_SPEC = {"type": (str, True), "metadata": (dict, True), "name": (str, False),
                "useCachedMetrics": (bool, False), "authenticationRef": (dict, False), "metricType": (str, False)}
PROMETHEUS_METADATA = {"serverAddress": True, "query": True, "threshold": True, "activationThreshold": False,
                       "namespace": False, "customHeaders": False, "ignoreNullValues": False,
                       "queryParameters": False, "unsafeSsl": False}


def _fields(where: str, value: dict, spec: dict) -> list[str]:
    problems = [f"{where}.{key}: unknown field" for key in value if key not in spec]
    for key, (kind, required) in spec.items():
        if key not in value:
            problems += [f"{where}.{key}: required"] if required else []
        elif not isinstance(value[key], kind) or (kind is int and isinstance(value[key], bool)):
            problems.append(f"{where}.{key}: must be {kind.__name__}, got {value[key]!r}")
    return problems


def keda_problems(obj: dict) -> list[str]:
    """What breaks KEDA's documented ScaledObject / prometheus-trigger spec (see the module docstring)."""
    problems = []
    if (obj.get("apiVersion"), obj.get("kind")) != ("keda.sh/v1alpha1", "ScaledObject"):
        problems.append(f"apiVersion/kind: {obj.get('apiVersion')}/{obj.get('kind')}")
    meta = obj.get("metadata") or {}
    if not meta.get("name"):
        problems.append("metadata.name: required")
    spec = obj.get("spec") or {}
    problems += _fields("spec", spec, SCALED_OBJECT_SPEC)
    target = spec.get("scaleTargetRef") or {}
    problems += _fields("spec.scaleTargetRef", target, {"apiVersion": (str, False), "kind": (str, False),
                                                         "name": (str, True),
                                                         "envSourceContainerName": (str, False)})
    if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        problems.append("spec.minReplicaCount is above maxReplicaCount")
    behavior = (((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}).get("behavior") or {})
    window = (behavior.get("scaleDown") or {}).get("stabilizationWindowSeconds", 0)
    if not isinstance(window, int) or not 0 <= window <= 3600:
        problems.append(f"stabilizationWindowSeconds must be an integer in 0..3600, got {window!r}")
    for index, trigger in enumerate(spec.get("triggers") or []):
        where = f"spec.triggers[{index}]"
        problems += _fields(where, trigger, TRIGGER_SPEC)
        if trigger.get("metricType", "AverageValue") not in ("AverageValue", "Value", "Utilization"):
            problems.append(f"{where}.metricType: {trigger['metricType']!r}")
        metadata = trigger.get("metadata") or {}
        problems += [f"{where}.metadata.{k}: must be a string" for k, v in metadata.items() if not isinstance(v, str)]
        if trigger.get("type") == "prometheus":
            problems += [f"{where}.metadata.{k}: required" for k, req in PROMETHEUS_METADATA.items()
                         if req and k not in metadata]
            problems += [f"{where}.metadata.{k}: unknown" for k in metadata if k not in PROMETHEUS_METADATA]
    return problems


def test_every_queue_gets_a_scaled_object_that_keda_s_documented_spec_accepts(configured, monkeypatch):
    monkeypatch.setenv("CROSSDOCK__WORKER_QUEUES__INTERVAL", "7.5")
    monkeypatch.setenv("CROSSDOCK__WORKER_QUEUES__COOLDOWN", "120")
    conf.reload()
    printed, _ = run_cli("deploy", "keda", "--prometheus-url", "http://prom.monitoring:9090")
    objects = by_queue(yaml.safe_load_all(printed))
    assert sorted(objects) == ["burst", "default", "high_memory"]
    for queue, obj in objects.items():
        assert keda_problems(obj) == [], queue
        spec, entry = obj["spec"], WorkerQueues.from_config().spec_for(queue)
        assert obj["metadata"]["namespace"] == "jobs"  # a ScaledObject sits beside its Deployment
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": deployment_name(queue)}
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (entry.min_workers, entry.max_workers)
        assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (8, 120)
        [trigger] = spec["triggers"]
        assert trigger["type"] == "prometheus" and trigger["metadata"]["serverAddress"] == "http://prom.monitoring:9090"
        assert trigger["metadata"]["query"] == f'max(crossdock_queue_desired_workers{{queue="{queue}"}})'
        assert trigger["metadata"]["ignoreNullValues"] == "false"  # a lost scrape is not "0 workers"


def test_keda_s_own_division_by_the_threshold_gives_the_formula(configured):
    """AverageValue: replicas = ceil(metric / threshold); the metric is the formula's result, threshold 1."""
    printed, _ = run_cli("deploy", "keda")
    burst = by_queue(yaml.safe_load_all(printed))["burst"]
    threshold = float(burst["spec"]["triggers"][0]["metadata"]["threshold"])
    spec = WorkerQueues.from_config().spec_for("burst")
    for queued, running in ((0, 0), (1, 0), (9, 2), (300, 0)):
        formula, _ = desired_workers(spec, queued=queued, running=running)
        keda = min(burst["spec"]["maxReplicaCount"], max(burst["spec"]["minReplicaCount"],
                                                         math.ceil(formula / threshold)))
        assert keda == formula, (queued, running)


def test_the_check_above_is_not_vacuous(configured):
    printed, _ = run_cli("deploy", "keda")
    obj = next(yaml.safe_load_all(printed))
    obj["spec"]["triggers"][0]["metadata"]["threshold"] = 1
    obj["spec"]["minReplicaCount"], obj["spec"]["maxReplicaCount"] = 5, 2
    obj["spec"]["sacleTargetRef"] = obj["spec"].pop("scaleTargetRef")
    problems = keda_problems(obj)
    assert "spec.triggers[0].metadata.threshold: must be a string" in problems
    assert "spec.minReplicaCount is above maxReplicaCount" in problems
    assert "spec.scaleTargetRef: required" in problems and "spec.sacleTargetRef: unknown field" in problems


def test_a_queue_name_is_quoted_in_the_promql_query():
    assert desired_workers_query('we"ird\\q') == 'max(crossdock_queue_desired_workers{queue="we\\"ird\\\\q"})'


def test_a_prometheus_url_that_is_not_http_is_refused(configured):
    assert "--prometheus-url must start with http" in refused("deploy", "keda", "--prometheus-url", "prometheus:9090")
