"""Shared pieces of the KubernetesExecutor integration tests: a pods API tier, DAG helpers, loops.

The executor always talks through the official client; a tier is either the local pod
runtime (API + node agent in this process) or a real kube-apiserver with our node agent.
Every test gets a namespace of its own, so scheduler job ids (1 in every fresh test
database) never meet pods of another test.
"""

from __future__ import annotations

import json
import os
import socket
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from sqlalchemy import select

from crossdock import database
from crossdock.configuration import conf
from crossdock.database import create_session
from crossdock.models import DagRun, TaskInstance

REJECT_IMAGES = ["*:does-not-exist"]
#: Upper bound for every wait: a hang fails the test instead of blocking the suite.
WAIT_LIMIT = 60.0
DAG_HEADER = "import os, sys, time\nfrom crossdock import DAG, BashOperator, PythonOperator\n"


@dataclass
class Tier:
    """A pods API the executor can use, and the namespace this test owns there."""

    name: str
    make_client: Callable[[], client.ApiClient]
    namespace: str
    url: str | None = None  # the local runtime's URL, for its fault hooks
    store: Any = None  # the local runtime's object store, to look past a failing API
    agent: Any = None  # the node agent running this tier's pods

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.make_client())

    def pods(self) -> list[dict[str, Any]]:
        response = self.core.list_namespaced_pod(self.namespace, _preload_content=False)
        return json.loads(response.data)["items"]

    def delete_all_pods(self) -> None:
        core = self.core
        for pod in self.pods():
            try:
                core.delete_namespaced_pod(pod["metadata"]["name"], self.namespace, grace_period_seconds=0,
                                           _preload_content=False)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def pod_exists(self, name: str) -> bool:
        try:
            self.core.read_namespaced_pod(name, self.namespace, _preload_content=False)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def kill(self, name: str) -> bool:
        """SIGKILL a pod's process, as a crash or the OOM killer would."""
        if self.url:
            return bool(self.fault("kill", {"namespace": self.namespace, "name": name}).get("killed"))
        return self.agent.kill_pod(namespace=self.namespace, name=name)

    def fault(self, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a fault hook of the local runtime (``fail-next``, ``compact``, ``kill``, ``clear``, ...)."""
        assert self.url, "fault hooks exist only on the local runtime"
        from crossdock.kubernetes.local_runtime.hook_client import runtime_request

        _, reply = runtime_request(self.make_client(), "POST", f"/_crossdock/faults/{action}", body or {})
        return reply or {}


def new_namespace(make_client: Callable[[], client.ApiClient]) -> str:
    namespace = f"kx-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(make_client()).create_namespace({"metadata": {"name": namespace}})
    return namespace


def use_dag_files(home: Path, monkeypatch, files: dict[str, str] | None = None, **settings: str) -> Path:
    """A DAGs folder in ``home`` holding ``files`` (name → source, dedented), made the
    configured one with new runs picked up at once; ``settings`` are more
    ``CROSSDOCK__<SECTION__KEY>`` values (``CORE__MAX_MAP_LENGTH="3"``). The database is migrated."""
    folder = home / "dags"
    folder.mkdir(exist_ok=True)
    for name, source in (files or {}).items():
        (folder / name).write_text(textwrap.dedent(source))
    env = {"CORE__DAGS_FOLDER": str(folder), "SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0", **settings}
    for key, value in env.items():
        monkeypatch.setenv(f"CROSSDOCK__{key}", value)
    conf.reload()
    database.migrate()
    return folder


def configure(monkeypatch, home: Path, namespace: str, **settings: Any) -> Path:
    """Point crossdock at a DAG folder in ``home`` and the executor at ``namespace``."""
    folder = home / "dags"
    folder.mkdir(exist_ok=True)
    env = {
        "CROSSDOCK__CORE__DAGS_FOLDER": str(folder),
        "CROSSDOCK__SCHEDULER__MAX_LOOP_SLEEP": "0.05",
        "CROSSDOCK__SCHEDULER__NEW_RUNS_POLL_INTERVAL": "0",
        "CROSSDOCK__KUBERNETES_EXECUTOR__NAMESPACE": namespace,
        "CROSSDOCK__KUBERNETES_EXECUTOR__SHARE_LOCAL_ENVIRONMENT": "True",
    }
    env.update({f"CROSSDOCK__KUBERNETES_EXECUTOR__{k.upper()}": str(v) for k, v in settings.items()})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    conf.reload()
    database.migrate()
    return folder


def write_dag(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(DAG_HEADER + textwrap.dedent(body))
    return path


def parse_and_trigger(folder: Path, dag_id: str, run_id: str = "r1") -> None:
    from crossdock.dag.dag_store import sync_parse_result_to_db
    from crossdock.dag.processor import parse_dag_folder
    from crossdock.scheduler.dag_runs import create_dag_run

    result = parse_dag_folder(str(folder))
    assert not result.import_errors, result.import_errors
    with create_session() as session:
        sync_parse_result_to_db(result, session)
    with create_session() as session:
        create_dag_run(session, dag_id=dag_id, run_id=run_id)


def run_states(dag_id: str, run_id: str = "r1") -> tuple[str, dict[str, TaskInstance]]:
    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one()
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                         TaskInstance.run_id == run_id)).all()
        return run.state, {ti.task_id: ti for ti in tis}


def run_scheduler(executor, *, on_loop: Callable[[Any], None] | None = None, limit: float = WAIT_LIMIT,
                  transitions: list | None = None):
    """Run a scheduler with ``executor`` until every DAG run is finished (or fail after ``limit``)."""
    from crossdock.scheduler.scheduler_job import SchedulerJob

    deadline = time.monotonic() + limit

    def listener(ti, old, new):
        if transitions is not None:
            transitions.append((ti.task_id, ti.try_number, old, new, ti.failure_reason))

    def stop_when(job) -> bool:
        if on_loop is not None:
            on_loop(job)
        if time.monotonic() > deadline:
            raise AssertionError(f"DAG runs not finished after {limit} s")
        return not job.runs and job.loop_count > 1

    job = SchedulerJob(executors=[executor], parse_dags=False, on_state_change=listener)
    job.run(stop_when=stop_when)
    return job


def wait_until(predicate: Callable[[], Any], *, limit: float = WAIT_LIMIT, step: Callable[[], None] | None = None,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + limit
    while True:
        if step is not None:
            step()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def require_real_kubeconfig() -> str:
    """The real kube-apiserver's kubeconfig, or skip (fail under CROSSDOCK_REQUIRE_SERVICES=1)."""
    from urllib.parse import urlsplit

    import yaml

    kubeconfig = os.environ.get("CROSSDOCK_TEST_REAL_KUBECONFIG")
    if not kubeconfig:
        message = ("needs the real kube-apiserver: CROSSDOCK_TEST_REAL_KUBECONFIG is unset "
                   "(start it with .ci/kube-apiserver.sh)")
        if os.environ.get("CROSSDOCK_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = urlsplit(yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"])
    host, port = server.hostname or "127.0.0.1", server.port or 443
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        message = f"needs the real kube-apiserver at {host}:{port}: {exc}"
        if os.environ.get("CROSSDOCK_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return kubeconfig
