"""The object store: one version counter, replayable history, 410 once it is compacted."""

from __future__ import annotations

import json
import threading

import pytest

from crossdock.kubernetes.local_runtime.errors import ApiError
from crossdock.kubernetes.local_runtime.store import ObjectStore


def _watch(store: ObjectStore, since, matches=lambda o: True) -> list[dict]:
    lines = store.watch(resource="pods", kind="Pod", since=since, matches=matches, timeout=0.05,
                        stop=threading.Event())
    return [json.loads(line) for line in lines]


def _add(store: ObjectStore, name: str, **labels) -> dict:
    return store.create("pods", {"metadata": {"name": name, "namespace": "ns", "labels": labels}}, kind="Pod")


def test_versions_increase_across_objects_and_no_op_updates_keep_them() -> None:
    store = ObjectStore()
    a, b = _add(store, "a"), _add(store, "b")
    assert int(b["metadata"]["resourceVersion"]) == int(a["metadata"]["resourceVersion"]) + 1
    same = store.update("pods", "ns", "a", lambda o: o)
    assert same["metadata"]["resourceVersion"] == a["metadata"]["resourceVersion"]
    changed = store.update("pods", "ns", "a", lambda o: {**o, "status": {"phase": "Running"}})
    assert int(changed["metadata"]["resourceVersion"]) == int(b["metadata"]["resourceVersion"]) + 1


def test_duplicate_missing_and_stale_writes_are_refused() -> None:
    store = ObjectStore()
    created = _add(store, "a")
    with pytest.raises(ApiError) as info:
        _add(store, "a")
    assert info.value.code == 409 and info.value.reason == "AlreadyExists"
    with pytest.raises(ApiError) as info:
        store.get("pods", "ns", "zzz")
    assert info.value.code == 404
    store.update("pods", "ns", "a", lambda o: {**o, "status": {"phase": "Running"}})
    with pytest.raises(ApiError) as info:
        store.update("pods", "ns", "a", lambda o: o, expect_rv=created["metadata"]["resourceVersion"])
    assert info.value.code == 409 and info.value.reason == "Conflict"


def test_watch_replays_everything_after_a_version_in_order() -> None:
    store = ObjectStore()
    first = _add(store, "a")
    _add(store, "b")
    store.update("pods", "ns", "a", lambda o: {**o, "status": {"phase": "Running"}})
    store.delete("pods", "ns", "b")
    events = _watch(store, int(first["metadata"]["resourceVersion"]))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)


def test_watch_without_version_starts_with_current_state() -> None:
    store = ObjectStore()
    _add(store, "a")
    _add(store, "b")
    store.delete("pods", "ns", "a")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in _watch(store, None)] == [("ADDED", "b")]


def test_selector_transitions_become_added_and_deleted() -> None:
    store = ObjectStore()
    start = int(_add(store, "other")["metadata"]["resourceVersion"])
    _add(store, "a", club="in")
    store.update("pods", "ns", "a", lambda o: {**o, "metadata": {**o["metadata"], "labels": {"club": "out"}}})
    store.update("pods", "ns", "a", lambda o: {**o, "metadata": {**o["metadata"], "labels": {"club": "in"}}})
    members = _watch(store, start, lambda o: o["metadata"]["labels"].get("club") == "in")
    assert [e["type"] for e in members] == ["ADDED", "DELETED", "ADDED"]


def test_compacted_versions_answer_410_expired() -> None:
    store = ObjectStore()
    first = _add(store, "a")
    _add(store, "b")
    store.compact()
    events = _watch(store, int(first["metadata"]["resourceVersion"]))
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["code"], status["reason"], status["kind"]) == (410, "Expired", "Status")
    assert _watch(store, store.compacted_version) == []  # the newest version still resumes


def test_history_limit_compacts_the_oldest() -> None:
    store = ObjectStore(history_limit=10)
    first = _add(store, "p0")
    for index in range(1, 30):
        _add(store, f"p{index}")
    assert store.compacted_version > int(first["metadata"]["resourceVersion"])
    assert _watch(store, 1)[0]["type"] == "ERROR"
    assert len(_watch(store, store.compacted_version)) == store.resource_version - store.compacted_version


def test_state_survives_a_restart_but_history_does_not(tmp_path) -> None:
    store = ObjectStore(state_dir=tmp_path)
    earlier = _add(store, "earlier")
    created = _add(store, "a")
    store.close()
    again = ObjectStore(state_dir=tmp_path)
    try:
        assert again.get("pods", "ns", "a")["metadata"]["uid"] == created["metadata"]["uid"]
        assert _watch(again, int(earlier["metadata"]["resourceVersion"]))[0]["type"] == "ERROR"
        assert int(_add(again, "b")["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    finally:
        again.close()
