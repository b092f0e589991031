"""Several schedulers on one metadata database: one active, hot standbys, nothing run twice.

Real processes throughout: ``crossdock scheduler`` processes (killed with SIGKILL, paused
with SIGSTOP), a real Celery worker on the run's private Redis, the run's own PostgreSQL
database or a SQLite file, and for the hybrid the local pod runtime (pods keep running
while the schedulers die, as on a cluster). Each task appends a line to a ledger when its work is done;
the test reads the ledger, not the scheduler's records, to prove every task ran to
success exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest

from crossdock.configuration import conf
from crossdock.executors.celery_worker import start_embedded_workers
from failover_support import (SchedulerFleet, active_scheduler, crossdock, kill_hard, ledger_counts,
                              wait_for_new_active, wait_for_run_end, write_ledger_dag)
from process_helpers import wait_for
from service_gates import POSTGRES_HOST, POSTGRES_PORT, POSTGRES_URL, REDIS_URL, require_service
from tcp_proxy import TcpProxy

#: Kept short so the suite stays quick; the default (10 s) is measured by bench/bench_failover.py.
TAKEOVER_SECONDS = 4.0


@pytest.fixture
def fleet_env(crossdock_home, request, monkeypatch):
    """Environment for every process of the test: the metadata DB chosen by the test's param.

    This process reads the same database (``failover_support`` polls it while it waits).
    """
    require_service("redis")
    backend = getattr(request, "param", "postgres")
    if backend == "postgres":
        request.getfixturevalue("postgres_url")
        db_url = POSTGRES_URL
    else:
        db_url = f"sqlite:///{crossdock_home}/crossdock.db"
    monkeypatch.setenv("CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN", db_url)
    conf.reload()
    dags = crossdock_home / "dags"
    dags.mkdir()
    queue = f"fo-{uuid.uuid4().hex[:8]}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("CROSSDOCK__")}
    env.update({
        "CROSSDOCK_HOME": str(crossdock_home),
        "CROSSDOCK__CORE__EXECUTOR": "CeleryExecutor",
        "CROSSDOCK__CORE__DAGS_FOLDER": str(dags),
        "CROSSDOCK__CORE__DEFAULT_QUEUE": queue,
        "CROSSDOCK__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # the tests trigger what they write
        "CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "CROSSDOCK__CELERY__BROKER_URL": f"{REDIS_URL}/2",
        "CROSSDOCK__CELERY__RESULT_BACKEND": f"{REDIS_URL}/3",
        "CROSSDOCK__SCHEDULER__STANDBY_TAKEOVER_SECONDS": str(TAKEOVER_SECONDS),
        "CROSSDOCK__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "CROSSDOCK__SCHEDULER__MAX_LOOP_SLEEP": "0.05",
        "CROSSDOCK__SCHEDULER__DAG_DIR_LIST_INTERVAL": "0",
    })
    assert crossdock(env, "db", "migrate").returncode == 0
    runtime = None
    if getattr(request, "param", "postgres") == "postgres":
        from crossdock.kubernetes.local_runtime.runtime import start_local_runtime

        runtime = start_local_runtime(state_dir=crossdock_home / "pod-runtime")
        env.update({"CROSSDOCK__CORE__EXECUTOR": "CeleryKubernetesExecutor",
                    "CROSSDOCK__KUBERNETES_EXECUTOR__CONFIG_FILE": str(runtime.kubeconfig_path),
                    "CROSSDOCK__KUBERNETES_EXECUTOR__SHARE_LOCAL_ENVIRONMENT": "True"})
    workers = start_embedded_workers(queues=[queue], concurrency=4, env=env)
    fleet = SchedulerFleet(env, crossdock_home)
    yield env, dags, fleet
    fleet.stop_all()
    workers.stop(timeout=0)  # no warm shutdown: the run is over (process_helpers.killed_when_done)
    if runtime is not None:
        runtime.stop()


def _start_fleet(fleet: SchedulerFleet, env, count: int) -> dict:
    for _ in range(count):
        fleet.start()
    active = wait_for_new_active(env, previous_id=None, limit=60)
    assert active is not None, fleet.logs()
    return active


def _kill_active_after_progress(env, fleet: SchedulerFleet, active: dict, ledger, *, progress: int):
    """Once ``progress`` more tasks are done, SIGKILL the active scheduler, wait for a standby
    to take over, and start a replacement (as a supervisor would); (new active, seconds)."""
    done_before = sum(ledger_counts(ledger).values())
    assert wait_for(lambda: sum(ledger_counts(ledger).values()) >= done_before + progress, limit=90), fleet.logs()
    killed_at = time.monotonic()
    kill_hard(active["pid"])
    replacement = wait_for_new_active(env, previous_id=active["id"], limit=4 * TAKEOVER_SECONDS)
    assert replacement is not None, f"no standby took over from job {active['id']}\n{fleet.logs()}"
    seconds = time.monotonic() - killed_at
    fleet.start()
    return replacement, seconds


def _assert_each_task_once(ledger, task_ids, fleet):
    counts = ledger_counts(ledger)
    twice = {task: n for task, n in counts.items() if n > 1}
    missing = [task for task in task_ids if counts[task] == 0]
    assert not twice, f"tasks run to success more than once: {twice}\n{fleet.logs()}"
    assert not missing, f"tasks never ran: {missing}\n{fleet.logs()}"
    assert sum(counts.values()) == len(task_ids)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(420)
def test_three_hybrid_schedulers_with_the_active_one_killed_five_times_run_every_task_once(fleet_env, tmp_path):
    """The issue's scenario: 200 tasks, one per layer in a pod, the rest on Celery workers."""
    env, dags, fleet = fleet_env
    ledger = tmp_path / "ledger.txt"
    task_ids = write_ledger_dag(dags, dag_id="ledger", ledger=ledger, layers=20, width=10, seconds=0.1,
                                pods_per_layer=1)
    active = _start_fleet(fleet, env, 3)
    trigger = crossdock(env, "dags", "trigger", "ledger", "-r", "r1")
    assert trigger.returncode == 0, trigger.stderr

    takeovers = []
    for _ in range(5):
        active, seconds = _kill_active_after_progress(env, fleet, active, ledger, progress=12)
        takeovers.append(seconds)

    state = wait_for_run_end(env, "ledger", "r1", limit=240)
    assert state == "success", fleet.logs()
    _assert_each_task_once(ledger, task_ids, fleet)
    assert len(fleet.alive()) == 3, "every scheduler not killed by the test is still running"
    states = json.loads(crossdock(env, "tasks", "states-for-dag-run", "ledger", "r1", "-o", "json").stdout)
    assert [row["state"] for row in states] == ["success"] * len(task_ids)
    pods = [row["task_id"] for row in states if row["executor"] == "KubernetesExecutor"]
    assert sorted(pods) == [task for task in task_ids if task.endswith("_00")]
    print(f"takeover after SIGKILL (s): {', '.join(f'{t:.1f}' for t in takeovers)}")


@pytest.mark.redis
@pytest.mark.timeout(300)
@pytest.mark.parametrize("fleet_env", ["sqlite"], indirect=True)
def test_standbys_take_over_on_sqlite_too(fleet_env, tmp_path):
    env, dags, fleet = fleet_env
    ledger = tmp_path / "ledger.txt"
    task_ids = write_ledger_dag(dags, dag_id="lite", ledger=ledger, layers=6, width=8, seconds=0.1)
    active = _start_fleet(fleet, env, 2)
    assert crossdock(env, "dags", "trigger", "lite", "-r", "r1").returncode == 0
    for _ in range(2):
        active, _seconds = _kill_active_after_progress(env, fleet, active, ledger, progress=8)
    assert wait_for_run_end(env, "lite", "r1", limit=180) == "success", fleet.logs()
    _assert_each_task_once(ledger, task_ids, fleet)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(300)
def test_a_paused_leader_that_wakes_after_a_takeover_writes_nothing_and_becomes_a_standby(fleet_env, tmp_path):
    env, dags, fleet = fleet_env
    ledger = tmp_path / "ledger.txt"
    task_ids = write_ledger_dag(dags, dag_id="pause", ledger=ledger, layers=8, width=6, seconds=0.1)
    paused = _start_fleet(fleet, env, 2)
    assert crossdock(env, "dags", "trigger", "pause", "-r", "r1").returncode == 0
    assert wait_for(lambda: sum(ledger_counts(ledger).values()) >= 6, limit=90), fleet.logs()

    os.kill(paused["pid"], signal.SIGSTOP)
    try:
        replacement = wait_for_new_active(env, previous_id=paused["id"], limit=4 * TAKEOVER_SECONDS)
        assert replacement is not None, fleet.logs()
        assert wait_for(lambda: sum(ledger_counts(ledger).values()) >= 18, limit=90), fleet.logs()
    finally:
        os.kill(paused["pid"], signal.SIGCONT)

    # The woken process finds its token stale, steps down and waits as a standby again.
    assert wait_for(lambda: "lost the lease" in fleet.logs(), limit=30), fleet.logs()
    assert active_scheduler(env)["id"] == replacement["id"]
    assert wait_for_run_end(env, "pause", "r1", limit=180) == "success", fleet.logs()
    _assert_each_task_once(ledger, task_ids, fleet)
    assert len(fleet.alive()) == 2
    rows = crossdock(env, "jobs", "list", "--running", "-o", "json").stdout
    assert rows.count('"standby"') == 1 and rows.count('"active"') == 1


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(300)
def test_a_leader_cut_off_from_the_database_is_replaced_and_fenced_out_when_it_reconnects(fleet_env, tmp_path):
    """The active scheduler reaches PostgreSQL through a proxy the test cuts: a network
    partition, not a crash. It must stay alive, send nothing it cannot record, and after
    the cut heals find its token stale instead of writing over its successor."""
    env, dags, fleet = fleet_env
    ledger = tmp_path / "ledger.txt"
    task_ids = write_ledger_dag(dags, dag_id="cut", ledger=ledger, layers=8, width=6, seconds=0.1)
    proxy = TcpProxy((POSTGRES_HOST, POSTGRES_PORT))
    proxy.start()
    try:
        cut_off = fleet.start(env={"CROSSDOCK__DATABASE__SQL_ALCHEMY_CONN":
                                   POSTGRES_URL.replace(f":{POSTGRES_PORT}/", f":{proxy.port}/")})
        first = wait_for_new_active(env, previous_id=None, limit=60)
        assert first is not None and first["pid"] == cut_off.pid, fleet.logs()
        fleet.start()
        assert crossdock(env, "dags", "trigger", "cut", "-r", "r1").returncode == 0
        assert wait_for(lambda: sum(ledger_counts(ledger).values()) >= 6, limit=90), fleet.logs()

        proxy.stop()
        replacement = wait_for_new_active(env, previous_id=first["id"], limit=4 * TAKEOVER_SECONDS)
        assert replacement is not None, fleet.logs()
        assert wait_for(lambda: sum(ledger_counts(ledger).values()) >= 18, limit=90), fleet.logs()
        assert cut_off.poll() is None, "a scheduler that lost its database must not crash"
        proxy.start()

        assert wait_for(lambda: "lost the lease" in fleet.logs(), limit=60), fleet.logs()
        assert active_scheduler(env)["id"] == replacement["id"]
        assert wait_for_run_end(env, "cut", "r1", limit=180) == "success", fleet.logs()
        _assert_each_task_once(ledger, task_ids, fleet)
        assert len(fleet.alive()) == 2
    finally:
        proxy.stop()
