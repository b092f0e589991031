"""Label and field selectors of the local pods API mean what Kubernetes' do."""

from __future__ import annotations

import pytest

from crossdock.kubernetes.local_runtime.errors import ApiError
from crossdock.kubernetes.local_runtime.selector import POD_FIELDS, FieldSelector, LabelSelector

LABELS = {"tier": "web", "track": "canary"}


@pytest.mark.parametrize("text,matches", [
    ("", True),
    ("tier=web", True),
    ("tier==web", True),
    ("tier=db", False),
    ("tier!=db", True),
    ("missing!=x", True),          # absent labels satisfy !=
    ("tier in (db, web)", True),
    ("tier in (db)", False),
    ("tier notin (db)", True),
    ("missing notin (x)", True),   # and notin
    ("tier", True),
    ("missing", False),
    ("!missing", True),
    ("!tier", False),
    ("tier=web,track=canary", True),
    ("tier=web,track=stable", False),
    ("example.com/role in (a,b)", False),
])
def test_label_selector_semantics(text: str, matches: bool) -> None:
    assert LabelSelector.parse(text).matches(LABELS) is matches


@pytest.mark.parametrize("text", ["tier in (web", "tier in web", "tier=web,", "=web", "tier >< 2"])
def test_unparsable_label_selectors_are_400(text: str) -> None:
    with pytest.raises(ApiError) as info:
        LabelSelector.parse(text)
    assert info.value.code == 400


def test_field_selector_on_node_name_and_phase() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    unbound = {"metadata": {"name": "q", "namespace": "ns"}, "spec": {}, "status": {"phase": "Pending"}}
    bound_here = FieldSelector.parse("spec.nodeName=n1", fields=POD_FIELDS)
    not_bound = FieldSelector.parse("spec.nodeName=", fields=POD_FIELDS)
    assert bound_here.matches(pod) and not bound_here.matches(unbound)
    assert not_bound.matches(unbound) and not not_bound.matches(pod)
    assert FieldSelector.parse("status.phase!=Pending,metadata.name=p", fields=POD_FIELDS).matches(pod)


def test_unknown_field_label_is_rejected_in_the_real_servers_words() -> None:
    with pytest.raises(ApiError) as info:
        FieldSelector.parse("spec.color=red", fields=POD_FIELDS)
    assert info.value.code == 400
    assert info.value.message == "field label not supported: spec.color"
