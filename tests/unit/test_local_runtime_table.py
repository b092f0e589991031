"""The pod Table kubectl prints: STATUS and AGE computed as the real server does."""

from __future__ import annotations

import calendar
import time

import pytest

from crossdock.kubernetes.local_runtime.table import human_age, pod_row, pod_status_text, wants_table


def _pod(phase: str, state: dict | None = None, **meta) -> dict:
    statuses = [{"name": "base", "ready": phase == "Running", "restartCount": 2, "state": state or {}}]
    return {"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z", **meta},
            "spec": {"containers": [{"name": "base"}], "nodeName": "n1"},
            "status": {"phase": phase, "containerStatuses": statuses, "podIP": "127.0.0.1"}}


@pytest.mark.parametrize("pod,text", [
    (_pod("Running", {"running": {}}), "Running"),
    (_pod("Pending", {"waiting": {"reason": "ErrImagePull"}}), "ErrImagePull"),
    (_pod("Failed", {"terminated": {"reason": "OOMKilled", "exitCode": 137}}), "OOMKilled"),
    (_pod("Failed", {"terminated": {"exitCode": 3}}), "ExitCode:3"),
    (_pod("Running", {"running": {}}, deletionTimestamp="2026-01-01T00:00:30Z"), "Terminating"),
])
def test_status_column(pod: dict, text: str) -> None:
    assert pod_status_text(pod) == text


def test_row_cells_and_age() -> None:
    now = calendar.timegm(time.strptime("2026-01-01T00:05:07Z", "%Y-%m-%dT%H:%M:%SZ"))
    assert human_age("2026-01-01T00:00:00Z", now) == "5m7s"
    assert human_age("2026-01-01T00:04:00Z", now) == "67s"
    assert human_age("2025-12-30T00:05:07Z", now) == "2d"
    cells = pod_row(_pod("Running", {"running": {}}))["cells"]
    assert cells[:4] == ["p", "1/1", "Running", 2]
    assert cells[5:7] == ["127.0.0.1", "n1"]


def test_only_table_requests_get_tables() -> None:
    assert wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert not wants_table("application/json")
    assert not wants_table(None)
