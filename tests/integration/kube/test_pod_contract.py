"""The pods contract, run on both tiers: what a client of Kubernetes relies on, checked
against our API + agent and against a real kube-apiserver + our agent."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client, watch



def _watch_lines(tier, *, resource_version: str, field_selector: str | None = None,
                 label_selector: str | None = None, timeout: int = 2) -> list[dict]:
    response = tier.core.list_namespaced_pod(
        tier.namespace, watch=True, resource_version=resource_version, timeout_seconds=timeout,
        field_selector=field_selector, label_selector=label_selector, _preload_content=False)
    events = []
    for raw in response.read().splitlines():
        if raw.strip():
            events.append(json.loads(raw))
    return events


def _until(gate) -> str:
    """A shell loop that waits for ``gate`` to exist: the test, not the clock, decides when a pod ends."""
    return f"while [ ! -e {gate} ]; do sleep 0.02; done"


# -- lifecycle ------------------------------------------------------------------------------

def test_pod_goes_pending_running_succeeded_with_exit_code(pods_api) -> None:
    name = pods_api.unique("ok")
    created = pods_api.create(pods_api.pod(name, ["sh", "-c", "sleep 0.3; exit 0"]))
    assert created["status"]["phase"] == "Pending"
    events = _watch_lines(pods_api, resource_version=created["metadata"]["resourceVersion"],
                          field_selector=f"metadata.name={name}", timeout=1)
    pod = pods_api.wait_phase(name, "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["spec"]["nodeName"] == pods_api.agent.node_name
    assert pods_api.terminated(pod)["exitCode"] == 0
    assert pods_api.terminated(pod)["reason"] == "Completed"
    # the phases a watcher sees, in order, end with Succeeded and pass through Running
    remaining = _watch_lines(pods_api, resource_version=events[-1]["object"]["metadata"]["resourceVersion"]
                             if events else created["metadata"]["resourceVersion"],
                             field_selector=f"metadata.name={name}", timeout=1)
    phases = [e["object"]["status"]["phase"] for e in events + remaining]
    assert "Running" in phases
    assert phases.index("Running") < phases.index("Succeeded")


def test_failing_command_ends_failed_with_its_exit_code(pods_api) -> None:
    name = pods_api.unique("fail")
    pods_api.create(pods_api.pod(name, ["sh", "-c", "echo about to fail; exit 3"]))
    pod = pods_api.wait_phase(name, "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Failed"
    assert pods_api.terminated(pod)["exitCode"] == 3
    assert pods_api.terminated(pod)["reason"] == "Error"


def test_command_args_env_and_working_dir_reach_the_process(pods_api, tmp_path) -> None:
    name = pods_api.unique("env")
    workdir = tmp_path / "work"
    pods_api.create(pods_api.pod(name, ["sh", "-c"], container={
        "args": ['echo "greeting=$GREETING pod=$POD_NAME ref=$(GREETING)"; pwd'],
        "env": [{"name": "GREETING", "value": "hello"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "workingDir": str(workdir)}))
    pods_api.wait_phase(name, "Succeeded", "Failed")
    text = pods_api.core.read_namespaced_pod_log(name, pods_api.namespace)
    assert f"greeting=hello pod={name} ref=hello" in text
    assert str(workdir) in text


# -- watch ----------------------------------------------------------------------------------

def test_watch_resumes_from_a_resource_version_without_gaps(pods_api) -> None:
    name = pods_api.unique("watched")
    created = pods_api.create(pods_api.pod(name, ["sh", "-c", "sleep 20"], labels={"step": "0"}))
    start_rv = created["metadata"]["resourceVersion"]
    for step in range(1, 4):
        pods_api.core.patch_namespaced_pod(name, pods_api.namespace, {"metadata": {"labels": {"step": str(step)}}})
    first = _watch_lines(pods_api, resource_version=start_rv, field_selector=f"metadata.name={name}", timeout=1)
    assert first, "a watch from an old version replays what came after it"
    resume_rv = first[1]["object"]["metadata"]["resourceVersion"] if len(first) > 1 else \
        first[0]["object"]["metadata"]["resourceVersion"]
    for step in range(4, 6):
        pods_api.core.patch_namespaced_pod(name, pods_api.namespace, {"metadata": {"labels": {"step": str(step)}}})
    second = _watch_lines(pods_api, resource_version=resume_rv, field_selector=f"metadata.name={name}", timeout=1)
    kept = [e for e in first if int(e["object"]["metadata"]["resourceVersion"]) <= int(resume_rv)]
    combined = kept + second
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in combined]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    steps = [e["object"]["metadata"]["labels"]["step"] for e in combined]
    label_changes = [s for i, s in enumerate(steps) if i == 0 or s != steps[i - 1]]
    # the agent's own updates (binding, Running) may come first, still labelled step 0
    assert label_changes in (["1", "2", "3", "4", "5"], ["0", "1", "2", "3", "4", "5"])
    pods_api.core.delete_namespaced_pod(name, pods_api.namespace, grace_period_seconds=0)


def test_watch_with_selector_reports_objects_leaving_it_as_deleted(pods_api) -> None:
    name = pods_api.unique("leaver")
    created = pods_api.create(pods_api.pod(name, ["sleep", "20"], labels={"club": "in"}))
    pods_api.core.patch_namespaced_pod(name, pods_api.namespace, {"metadata": {"labels": {"club": "out"}}})
    events = _watch_lines(pods_api, resource_version=created["metadata"]["resourceVersion"],
                          label_selector="club=in", timeout=1)
    mine = [e for e in events if e["object"]["metadata"]["name"] == name]
    assert mine and mine[-1]["type"] == "DELETED"
    pods_api.core.delete_namespaced_pod(name, pods_api.namespace, grace_period_seconds=0)


def test_watch_from_a_compacted_version_is_410_expired(pods_api) -> None:
    if pods_api.runtime is None:
        pytest.skip("a real kube-apiserver keeps at least 75 s of events in its watch cache, so a version "
                    "cannot be compacted away on demand; its 410 (checked by hand) reads "
                    "'too old resource version: N (M)', reason Expired, in a 200 watch stream")
    name = pods_api.unique("churn")
    created = pods_api.create(pods_api.pod(name, ["sleep", "30"]))
    old_rv = created["metadata"]["resourceVersion"]
    pods_api.core.patch_namespaced_pod(name, pods_api.namespace, {"metadata": {"labels": {"moved": "on"}}})
    pods_api.runtime.api.store.compact()
    events = _watch_lines(pods_api, resource_version=old_rv, timeout=1)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["kind"], status["status"], status["reason"], status["code"]) == ("Status", "Failure", "Expired", 410)
    assert status["message"].startswith(f"too old resource version: {old_rv} (")
    # the official client's Watch retries once, then surfaces the 410 for the caller to relist
    with pytest.raises(client.ApiException) as info:
        for _ in watch.Watch().stream(pods_api.core.list_namespaced_pod, pods_api.namespace,
                                      resource_version=old_rv):
            pass
    assert info.value.status == 410
    pods_api.core.delete_namespaced_pod(name, pods_api.namespace, grace_period_seconds=0)


# -- selectors ------------------------------------------------------------------------------

SELECTOR_CASES = [
    ("tier=web", {"web-a", "web-b"}),
    ("tier!=web", {"db", "bare"}),
    ("tier in (web,db)", {"web-a", "web-b", "db"}),
    ("tier notin (web)", {"db", "bare"}),
    ("tier", {"web-a", "web-b", "db"}),
    ("!tier", {"bare"}),
    ("tier=web,track=canary", {"web-b"}),
]


@pytest.fixture(scope="module")
def labelled_pods(pods_api):
    suite = pods_api.unique("sel")
    labels = {"web-a": {"tier": "web"}, "web-b": {"tier": "web", "track": "canary"},
              "db": {"tier": "db"}, "bare": {}}
    for short, extra in labels.items():
        pods_api.create(pods_api.pod(f"{suite}-{short}", ["true"], labels={"suite": suite, **extra}))
    return suite


@pytest.mark.parametrize("selector,expected", SELECTOR_CASES)
def test_label_selectors_match_like_kubernetes(pods_api, labelled_pods: str, selector: str,
                                               expected: set[str]) -> None:
    found = pods_api.core.list_namespaced_pod(pods_api.namespace, label_selector=f"suite={labelled_pods},{selector}")
    names = {item.metadata.name[len(labelled_pods) + 1:] for item in found.items}
    assert names == expected


def test_unparsable_label_selector_is_a_400(pods_api) -> None:
    with pytest.raises(client.ApiException) as info:
        pods_api.core.list_namespaced_pod(pods_api.namespace, label_selector="tier in (web")
    assert info.value.status == 400


# -- errors ---------------------------------------------------------------------------------

def test_missing_pod_is_404_with_status_body(pods_api) -> None:
    with pytest.raises(client.ApiException) as info:
        pods_api.core.read_namespaced_pod("no-such-pod", pods_api.namespace)
    body = json.loads(info.value.body)
    assert info.value.status == 404
    assert body["kind"] == "Status" and body["reason"] == "NotFound"
    assert body["message"] == 'pods "no-such-pod" not found'
    assert body["details"] == {"name": "no-such-pod", "kind": "pods"}


def test_duplicate_name_is_409_already_exists(pods_api) -> None:
    name = pods_api.unique("dup")
    pods_api.create(pods_api.pod(name, ["true"]))
    with pytest.raises(client.ApiException) as info:
        pods_api.create(pods_api.pod(name, ["true"]))
    body = json.loads(info.value.body)
    assert info.value.status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == f'pods "{name}" already exists'


def test_pod_without_containers_is_422_with_causes(pods_api) -> None:
    status, body, _ = pods_api.raw("POST", f"/api/v1/namespaces/{pods_api.namespace}/pods",
                                   {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "empty"}, "spec": {}})
    assert status == 422
    assert body["kind"] == "Status" and body["reason"] == "Invalid" and body["code"] == 422
    assert {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"} \
        in body["details"]["causes"]
    assert body["message"] == 'Pod "empty" is invalid: spec.containers: Required value'


def test_bad_name_and_nameless_container_are_each_a_cause(pods_api) -> None:
    status, body, _ = pods_api.raw("POST", f"/api/v1/namespaces/{pods_api.namespace}/pods", {
        "metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"image": "x:1"}]}})
    assert status == 422
    fields = [cause["field"] for cause in body["details"]["causes"]]
    assert fields == ["metadata.name", "spec.containers[0].name"]
    assert "a lowercase RFC 1123 subdomain" in body["details"]["causes"][0]["message"]


def test_unknown_fields_are_dropped_not_rejected(pods_api) -> None:
    name = pods_api.unique("unknown")
    body = pods_api.pod(name, ["true"])
    body["spec"]["containers"][0]["madeUpField"] = 1
    body["spec"]["alsoMadeUp"] = {"x": 1}
    status, created, _ = pods_api.raw("POST", f"/api/v1/namespaces/{pods_api.namespace}/pods", body)
    assert status == 201
    assert "alsoMadeUp" not in created["spec"]
    assert "madeUpField" not in created["spec"]["containers"][0]


def test_binding_twice_is_a_conflict(pods_api) -> None:
    name = pods_api.unique("bind")
    pods_api.agent.hold_pending(True)
    try:
        pods_api.create(pods_api.pod(name, ["true"]))
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": pods_api.agent.node_name}}
        first = pods_api.core.create_namespaced_pod_binding(name, pods_api.namespace, binding,
                                                            _preload_content=False)
        assert first.status == 201
        with pytest.raises(client.ApiException) as info:
            pods_api.core.create_namespaced_pod_binding(name, pods_api.namespace, binding, _preload_content=False)
        assert info.value.status == 409
        assert "is already assigned to node" in json.loads(info.value.body)["message"]
    finally:
        pods_api.agent.hold_pending(False)
    assert pods_api.wait_phase(name, "Succeeded", "Failed")["status"]["phase"] == "Succeeded"


# -- deletion -------------------------------------------------------------------------------

def test_graceful_deletion_marks_then_deletes(pods_api) -> None:
    name = pods_api.unique("grace")
    created = pods_api.create(pods_api.pod(name, ["sleep", "30"]))
    pods_api.wait_phase(name, "Running")
    reply = json.loads(pods_api.core.delete_namespaced_pod(name, pods_api.namespace, _preload_content=False).data)
    assert reply["metadata"]["deletionTimestamp"]
    assert reply["metadata"]["deletionGracePeriodSeconds"] == 5
    pods_api.wait_gone(name)
    events = _watch_lines(pods_api, resource_version=created["metadata"]["resourceVersion"],
                          field_selector=f"metadata.name={name}", timeout=1)
    assert events[-1]["type"] == "DELETED"
    marked = [e for e in events if e["object"]["metadata"].get("deletionTimestamp")]
    assert marked[0]["type"] == "MODIFIED"
    # the agent stopped the process and said so before the pod went away
    assert any(pods_api.terminated(e["object"]).get("exitCode") == 143 for e in events)


def test_unbound_pod_is_deleted_at_once(pods_api) -> None:
    name = pods_api.unique("unbound")
    pods_api.agent.hold_pending(True)
    try:
        pods_api.create(pods_api.pod(name, ["true"]))
        pods_api.core.delete_namespaced_pod(name, pods_api.namespace)
        with pytest.raises(client.ApiException) as info:
            pods_api.read(name)
        assert info.value.status == 404
    finally:
        pods_api.agent.hold_pending(False)


# -- logs -----------------------------------------------------------------------------------

def test_logs_of_running_and_finished_pods_with_tail_lines(pods_api, tmp_path) -> None:
    name, gate = pods_api.unique("logs"), tmp_path / "gate"
    pods_api.create(pods_api.pod(name, ["sh", "-c", f"echo one; echo two; echo three; {_until(gate)}; echo four"]))
    pods_api.wait_phase(name, "Running")
    pods_api.wait_for(name, lambda _: "three" in pods_api.core.read_namespaced_pod_log(name, pods_api.namespace))
    assert pods_api.core.read_namespaced_pod_log(name, pods_api.namespace, tail_lines=1) == "three\n"
    gate.touch()
    pods_api.wait_phase(name, "Succeeded")
    assert pods_api.core.read_namespaced_pod_log(name, pods_api.namespace) == "one\ntwo\nthree\nfour\n"
    assert pods_api.core.read_namespaced_pod_log(name, pods_api.namespace, tail_lines=2) == "three\nfour\n"


def test_log_of_unknown_container_is_400(pods_api) -> None:
    name = pods_api.unique("logc")
    pods_api.create(pods_api.pod(name, ["true"]))
    with pytest.raises(client.ApiException) as info:
        pods_api.core.read_namespaced_pod_log(name, pods_api.namespace, container="nope")
    assert info.value.status == 400
    assert json.loads(info.value.body)["message"] == f"container nope is not valid for pod {name}"


# -- limits and deadlines -------------------------------------------------------------------

def test_process_over_its_memory_limit_is_oom_killed(pods_api) -> None:
    name = pods_api.unique("oom")
    hog = "import time\nblock = b'x' * (300 * 1024 * 1024)\ntime.sleep(30)"
    pods_api.create(pods_api.pod(name, ["python3", "-c", hog],
                                 container={"resources": {"limits": {"memory": "64Mi"}}}))
    pod = pods_api.wait_phase(name, "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Failed"
    assert pods_api.terminated(pod)["reason"] == "OOMKilled"
    assert pods_api.terminated(pod)["exitCode"] == 137


def test_pod_past_its_active_deadline_fails_with_deadline_exceeded(pods_api) -> None:
    name = pods_api.unique("deadline")
    pods_api.create(pods_api.pod(name, ["sleep", "30"], activeDeadlineSeconds=1))
    pod = pods_api.wait_phase(name, "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "DeadlineExceeded"


# -- values the API decodes or validates (what a pod_override most often gets wrong) -----------

def _create_raw(pods_api, name: str, *, container: dict | None = None, meta: dict | None = None):
    body = pods_api.pod(name, ["true"], container=container)
    body["metadata"].update(meta or {})
    return pods_api.raw("POST", f"/api/v1/namespaces/{pods_api.namespace}/pods", body)[:2]


@pytest.mark.parametrize("case, container, meta, decoder_words", [
    ("quantity", {"resources": {"limits": {"memory": "lots"}}}, None,
     "v1.ResourceRequirements.Limits: unmarshalerDecoder: quantities must match the regular expression "
     "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    ("request", {"resources": {"requests": {"cpu": "1x"}}}, None, "quantities must match the regular expression"),
    ("env", {"env": [{"name": "RETRIES", "value": 5}]}, None,
     'v1.EnvVar.Value: ReadString: expects " or n, but found 5'),
    ("label", None, {"labels": {"team": 1}}, 'v1.ObjectMeta.Labels: ReadString: expects " or n, but found 1'),
    ("annotation", None, {"annotations": {"note": True}},
     'v1.ObjectMeta.Annotations: ReadString: expects " or n, but found t'),
])
def test_value_that_does_not_decode_is_400_bad_request(pods_api, case, container, meta, decoder_words) -> None:
    name = pods_api.unique(f"undecodable-{case}")
    status, body = _create_raw(pods_api, name, container=container, meta=meta)
    assert status == 400, body
    assert body["kind"] == "Status" and body["reason"] == "BadRequest" and body["code"] == 400
    assert body["message"].startswith('Pod in version "v1" cannot be handled as a Pod: ')
    assert decoder_words in body["message"]
    with pytest.raises(client.ApiException) as info:
        pods_api.read(name)
    assert info.value.status == 404


def test_number_quantities_are_accepted_and_every_quantity_reads_back_canonical(pods_api) -> None:
    name = pods_api.unique("numbers")
    status, body = _create_raw(pods_api, name, container={"resources": {
        "limits": {"cpu": 0.5, "memory": "2048Mi"}, "requests": {"cpu": 0.25, "memory": 268435456}}})
    assert status == 201, body
    assert body["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m", "memory": "2Gi"}, "requests": {"cpu": "250m", "memory": "268435456"}}
    pods_api.core.delete_namespaced_pod(name, pods_api.namespace, grace_period_seconds=0)


@pytest.mark.parametrize("case, container, meta, causes", [
    ("negative", {"resources": {"limits": {"memory": "-1Gi"}}}, None, [
        {"reason": "FieldValueInvalid", "message": 'Invalid value: "-1Gi": must be greater than or equal to 0',
         "field": "spec.containers[0].resources.limits[memory]"},
        {"reason": "FieldValueInvalid", "message": 'Invalid value: "-1Gi": must be greater than or equal to 0',
         "field": "spec.containers[0].resources.requests[memory]"}]),
    ("over-limit", {"resources": {"limits": {"memory": "1Gi"}, "requests": {"memory": "2Gi"}}}, None, [
        {"reason": "FieldValueInvalid", "message": 'Invalid value: "2Gi": must be less than or equal to memory limit',
         "field": "spec.containers[0].resources.requests"}]),
    ("label-value", None, {"labels": {"team": "has space"}}, [
        {"reason": "FieldValueInvalid", "field": "metadata.labels",
         "message": 'Invalid value: "has space": a valid label must be an empty string or consist of alphanumeric '
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                    "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"}]),
    ("long-label", None, {"labels": {"team": "a" * 64}}, [
        {"reason": "FieldValueInvalid", "field": "metadata.labels",
         "message": f'Invalid value: "{"a" * 64}": must be no more than 63 characters'}]),
    ("label-key", None, {"labels": {"bad key": "x"}}, [
        {"reason": "FieldValueInvalid", "field": "metadata.labels",
         "message": "Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or "
                    "'.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
                    "or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"}]),
    ("annotation-key", None, {"annotations": {"bad key": "x"}}, [
        {"reason": "FieldValueInvalid", "field": "metadata.annotations",
         "message": "Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or "
                    "'.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
                    "or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"}]),
    ("env-name", {"env": [{"name": "1 A", "value": "x"}]}, None, [
        {"reason": "FieldValueInvalid", "field": "spec.containers[0].env[0].name",
         "message": "Invalid value: \"1 A\": a valid environment variable name must consist of alphabetic "
                    "characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  "
                    "or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is "
                    "'[-._a-zA-Z][-._a-zA-Z0-9]*')"}]),
])
def test_value_that_breaks_a_rule_is_422_with_the_real_cause(pods_api, case, container, meta, causes) -> None:
    name = pods_api.unique(f"invalid-{case}")
    status, body = _create_raw(pods_api, name, container=container, meta=meta)
    assert status == 422, body
    assert body["reason"] == "Invalid" and body["details"]["causes"] == causes
    assert body["message"].startswith(f'Pod "{name}" is invalid: ')


# -- what the runtime cannot run ------------------------------------------------------------

def test_container_without_command_fails_with_config_error(pods_api) -> None:
    name = pods_api.unique("nocmd")
    body = pods_api.pod(name, [])
    del body["spec"]["containers"][0]["command"]
    pods_api.create(body)
    pod = pods_api.wait_phase(name, "Failed")
    assert pod["status"]["reason"] == "CreateContainerConfigError"
    assert "command" in pod["status"]["message"]
    assert pods_api.waiting(pod)["reason"] == "CreateContainerConfigError"


def test_env_from_a_missing_secret_fails_with_config_error(pods_api) -> None:
    name = pods_api.unique("secret")
    pods_api.create(pods_api.pod(name, ["true"], container={"env": [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "no-such-secret", "key": "token"}}}]}))
    pod = pods_api.wait_phase(name, "Failed")
    assert pod["status"]["reason"] == "CreateContainerConfigError"
    assert pod["status"]["message"] == 'secret "no-such-secret" not found'


def test_unpullable_image_stays_pending_with_err_image_pull(pods_api) -> None:
    name = pods_api.unique("pull")
    pods_api.create(pods_api.pod(name, ["true"], container={"image": "crossdock/missing:does-not-exist"}))
    pod = pods_api.wait_for(name, lambda p: pods_api.waiting(p).get("reason") == "ErrImagePull")
    assert pod["status"]["phase"] == "Pending"
    pods_api.core.delete_namespaced_pod(name, pods_api.namespace)
    pods_api.wait_gone(name)


def test_missing_executable_fails_with_start_error(pods_api) -> None:
    name = pods_api.unique("noexec")
    pods_api.create(pods_api.pod(name, ["no-such-binary-here"]))
    pod = pods_api.wait_phase(name, "Failed")
    assert pods_api.terminated(pod)["reason"] == "StartError"
    assert "no-such-binary-here" in pods_api.terminated(pod)["message"]


# -- agent restarts -------------------------------------------------------------------------

def test_agent_restart_keeps_outcomes_of_pods_that_finished_meanwhile(pods_api, tmp_path) -> None:
    finisher, survivor = pods_api.unique("finisher"), pods_api.unique("survivor")
    finish_gate, survive_gate = tmp_path / "finish", tmp_path / "survive"
    pods_api.create(pods_api.pod(finisher, ["sh", "-c", f"{_until(finish_gate)}; exit 4"]))
    pods_api.create(pods_api.pod(survivor, ["sh", "-c", f"{_until(survive_gate)}; echo survived"]))
    pods_api.wait_phase(finisher, "Running")
    pods_api.wait_phase(survivor, "Running")
    pods_api.agent.stop(kill_pods=False)
    finish_gate.touch()  # the finisher ends while no agent is watching
    result_file = pods_api.agent.pods_dir / pods_api.read(finisher)["metadata"]["uid"] / "result.json"
    deadline = time.monotonic() + 30
    while not result_file.exists():
        assert time.monotonic() < deadline, "the finisher never ended"
        time.sleep(0.05)
    assert pods_api.read(finisher)["status"]["phase"] == "Running"  # nobody has told the API yet
    pods_api.restart_agent()
    finished = pods_api.wait_phase(finisher, "Succeeded", "Failed")
    assert finished["status"]["phase"] == "Failed"
    assert pods_api.terminated(finished)["exitCode"] == 4
    survive_gate.touch()  # the survivor, adopted by the new agent, ends now
    survived = pods_api.wait_phase(survivor, "Succeeded", "Failed")
    assert survived["status"]["phase"] == "Succeeded"
    assert pods_api.core.read_namespaced_pod_log(survivor, pods_api.namespace) == "survived\n"
