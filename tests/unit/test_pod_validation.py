"""The value rules of a pod (labels, annotations, quantities, env) as Kubernetes applies them."""

from __future__ import annotations

import pytest

from crossdock.kubernetes.local_runtime.auth import BearerAuth, bearer_of, load_or_create_token
from crossdock.kubernetes.pod_generator import PodOverrideError, check_pod_override
from crossdock.kubernetes.pod_validation import (
    canonical_quantity, parse_quantity_value, pod_problems, qualified_name_problems,
)


def _pod(container: dict | None = None, **meta) -> dict:
    return {"metadata": meta, "spec": {"containers": [{"name": "base", **(container or {})}]}}


@pytest.mark.parametrize("value", ["lots", "1x", "", "1.2.3Gi", "Infinity", "NaN", " 1", "1 Gi", True, None, [1]])
def test_quantities_that_do_not_parse(value):
    with pytest.raises(ValueError, match="quantities must match the regular expression"):
        parse_quantity_value(value)


@pytest.mark.parametrize("value, canonical", [
    ("100m", "100m"), (0.5, "500m"), ("0.5", "500m"), (2, "2"), ("1024Mi", "1Gi"), ("1.5Gi", "1536Mi"),
    (268435456, "268435456"), ("1000", "1k"), ("1e3", "1e3"), ("0.1m", "100u"), ("512", "512"), ("0", "0"),
])
def test_quantities_read_back_as_the_api_server_writes_them(value, canonical):
    assert canonical_quantity(value) == canonical


def test_problems_name_the_field_and_tell_decoding_from_validation():
    problems = pod_problems(_pod({"resources": {"limits": {"memory": "lots", "cpu": "1"}, "requests": {"cpu": "2"}},
                                  "env": [{"name": "N", "value": 5}, {"name": "9bad", "value": "x"}]},
                                 labels={"team": 1, "ok": "fine", "bad value": "x y"}, annotations={"note": 2}))
    described = {problem.describe(): problem.decode for problem in problems}
    assert described == {
        "metadata.labels['team']: must be a string, not integer 1 (write it in quotes)": True,
        "metadata.labels['bad value']: Invalid value: \"bad value\": " + qualified_name_problems("bad value")[0]: False,
        "metadata.labels['bad value']: Invalid value: \"x y\": a valid label must be an empty string or consist of "
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
        "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
        "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')": False,
        "metadata.annotations['note']: must be a string, not integer 2 (write it in quotes)": True,
        "spec.containers[0].resources.limits[memory]: Invalid value: \"lots\": quantities must match the regular "
        "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'": True,
        "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit":
            False,
        "spec.containers[0].env[0].value (N): must be a string, not integer 5 (write it in quotes)": True,
        "spec.containers[0].env[1].name: Invalid value: \"9bad\": a valid environment variable name must consist "
        "of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  "
        "or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')": False,
    }


@pytest.mark.parametrize("key, ok", [
    ("app", True), ("example.com/app", True), ("a" * 63, True), ("a" * 64, False), ("/app", False),
    ("Example.com/app", False), ("app/", False), ("-app", False), ("kubernetes.io/hostname", True),
])
def test_label_and_annotation_keys_are_qualified_names(key, ok):
    assert (qualified_name_problems(key) == []) is ok


def test_good_pod_has_no_problems_and_numbers_are_fine_as_quantities():
    assert pod_problems(_pod({"resources": {"limits": {"cpu": 0.5, "memory": "1Gi"}, "requests": {"cpu": "250m"}},
                              "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {}}]},
                             labels={"team": "data", "empty": ""})) == []


def test_pod_override_check_refuses_what_an_api_server_would_refuse():
    with pytest.raises(PodOverrideError, match=r"pod_override\.metadata\.labels\.team must be a string, not int 1"):
        check_pod_override({"metadata": {"labels": {"team": 1}}})
    with pytest.raises(PodOverrideError, match=r"pod_override: spec\.containers\[0\]\.resources\.limits\[memory\]"):
        check_pod_override({"spec": {"containers": [{"name": "base", "resources": {"limits": {"memory": "lots"}}}]}})
    assert check_pod_override({"spec": {"containers": [{"name": "base", "resources": {"limits": {"cpu": 1}}}]}}) \
        == {"spec": {"containers": [{"name": "base", "resources": {"limits": {"cpu": "1"}}}]}}


# -- the runtime's bearer token ----------------------------------------------------------------
def test_token_file_is_random_private_and_reused(tmp_path):
    first = load_or_create_token(tmp_path / "state")
    assert load_or_create_token(tmp_path / "state") == first
    assert load_or_create_token(tmp_path / "other") != first
    assert oct((tmp_path / "state" / "token").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"


def test_bearer_auth_accepts_only_its_token_and_health_probes_without_one():
    auth = BearerAuth("right")
    assert auth.accepts({"Authorization": "Bearer right"}) and auth.accepts({"Authorization": "bearer right"})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic right"},
                    {"Authorization": "Bearer "}, {"Authorization": "Bearer right-and-more"}):
        assert not auth.accepts(headers)
    assert auth.permits("/healthz", {}) and not auth.permits("/healthz", {"Authorization": "Bearer wrong"})
    assert not auth.permits("/api/v1/pods", {})
    assert bearer_of({"Authorization": "Bearer abc"}) == "abc"
    with pytest.raises(ValueError):
        BearerAuth("")
