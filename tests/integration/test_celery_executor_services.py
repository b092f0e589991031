"""CeleryExecutor end to end: real worker processes on real Redis, RabbitMQ and PostgreSQL.

Each test starts its own ``crossdock celery worker`` processes on a queue of its own,
so tests never take each other's messages, and runs real ``crossdock tasks run``
commands for a DAG file in tmp_path.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from celery import states

from crossdock.configuration import conf
from crossdock.executors.celery_app import EXECUTE_COMMAND_TASK
from crossdock.executors.celery_executor import CeleryExecutor
from crossdock.executors.celery_worker import start_embedded_workers
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.state import TaskInstanceState as S
from service_gates import POSTGRES_URL, RABBITMQ_URL, REDIS_PORT, REDIS_URL, require_service
from executor_doubles import FakeTI
from tcp_proxy import TcpProxy


@pytest.fixture(autouse=True)
def dags_folder_is_tmp_path(tmp_path, monkeypatch):
    """The DAG files these tests write live in tmp_path; workers run only DAG files in the DAGs folder."""
    monkeypatch.setenv("CROSSDOCK__CORE__DAGS_FOLDER", str(tmp_path))
    conf.reload()


#: Upper bound for waits on real processes; tests end as soon as the awaited thing happens.
WAIT_LIMIT = 60.0

REDIS_BROKER = f"{REDIS_URL}/0"
REDIS_BACKEND = f"{REDIS_URL}/1"
POSTGRES_BACKEND = "db+" + POSTGRES_URL


@pytest.fixture
def dag_file(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    path = tmp_path / "celery_it.py"
    path.write_text(textwrap.dedent(f"""
        import os, time
        from crossdock import DAG, PythonOperator

        OUT = {str(out)!r}

        def note(name):
            with open(os.path.join(OUT, name), "a") as handle:
                handle.write(f"{{os.getpid()}}\\n")

        def hello():
            note("hello")
            print("hello from a celery worker")

        def boom():
            raise RuntimeError("it broke on purpose")

        def slow():
            note("slow")
            time.sleep(3)

        def hang():
            note("hang")
            time.sleep(120)

        with DAG("celery_it") as dag:
            PythonOperator("hello", python_callable=hello)
            PythonOperator("boom", python_callable=boom)
            PythonOperator("slow", python_callable=slow)
            PythonOperator("hang", python_callable=hang)
    """))
    return path


def runs(dag_file: Path, name: str) -> list[str]:
    marker = dag_file.parent / "out" / name
    return marker.read_text().split() if marker.exists() else []


def command(dag_file: Path, task_id: str, try_number: int = 1) -> tuple[TaskInstanceKey, list[str]]:
    key = TaskInstanceKey("celery_it", task_id, "run1", try_number)
    return key, ["crossdock", "tasks", "run", "celery_it", task_id, "run1", "--try-number", str(try_number),
                 "--subdir", str(dag_file)]


def configure(monkeypatch, *, broker: str, backend: str, **extra: str) -> str:
    """Point this process (and workers started after) at the servers; return a fresh queue name."""
    monkeypatch.setenv("CROSSDOCK__CELERY__BROKER_URL", broker)
    monkeypatch.setenv("CROSSDOCK__CELERY__RESULT_BACKEND", backend)
    for key, value in extra.items():
        monkeypatch.setenv(f"CROSSDOCK__CELERY__{key.upper()}", value)
    conf.reload()
    return f"it-{uuid.uuid4().hex[:10]}"


def wait_for(predicate, what: str, limit: float = WAIT_LIMIT):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def run_until_done(executor: CeleryExecutor, keys) -> dict:
    """Heartbeat until every key has a final event; return the final events."""
    final: dict = {}

    def done():
        executor.heartbeat()
        for key, (state, info) in executor.get_event_buffer().items():
            if state in (S.SUCCESS, S.FAILED):
                final[key] = (state, info)
        return all(key in final for key in keys)

    wait_for(done, f"outcomes of {keys}")
    return final


def broker_queue_length(queue: str) -> int:
    """Messages waiting in a Redis broker queue (not yet taken by a worker)."""
    import redis

    client = redis.Redis.from_url(REDIS_BROKER)
    try:
        return client.llen(queue)
    finally:
        client.close()


def queue_command(executor: CeleryExecutor, key, cmd, queue: str) -> None:
    executor.queue_command(FakeTI(key), cmd, queue=queue)


@pytest.fixture
def workers_started():
    started = []

    def start(queue: str, **kwargs):
        workers = start_embedded_workers(queues=[queue], concurrency=kwargs.pop("concurrency", 2),
                                         hostname_prefix=kwargs.pop("prefix", f"w{len(started)}-"),
                                         **kwargs)
        started.append(workers)
        return workers

    yield start
    for workers in started:
        workers.stop(timeout=0)  # no warm shutdown: the test is over (process_helpers.killed_when_done)


def _check_success_and_failure(executor, dag_file, queue, workers):
    hello_key, hello_cmd = command(dag_file, "hello")
    boom_key, boom_cmd = command(dag_file, "boom")
    queue_command(executor, hello_key, hello_cmd, queue)
    queue_command(executor, boom_key, boom_cmd, queue)
    final = run_until_done(executor, [hello_key, boom_key])
    assert final[hello_key][0] == S.SUCCESS
    state, reason = final[boom_key]
    assert state == S.FAILED
    assert "RuntimeError: it broke on purpose" in reason
    assert workers.hostnames[0] in reason
    assert "celery task id " in reason
    assert len(runs(dag_file, "hello")) == 1
    _sources, lines = executor.get_task_log(FakeTI(hello_key), 1)
    assert any("hello from a celery worker" in line for line in lines)


@pytest.mark.redis
def test_redis_broker_and_backend_report_success_and_failure(monkeypatch, dag_file, workers_started):
    require_service("redis")
    queue = configure(monkeypatch, broker=REDIS_BROKER, backend=REDIS_BACKEND)
    workers = workers_started(queue)
    executor = CeleryExecutor()
    executor.start()
    _check_success_and_failure(executor, dag_file, queue, workers)


@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_rabbitmq_broker_with_postgres_backend(monkeypatch, dag_file, workers_started):
    require_service("rabbitmq")
    require_service("postgres")
    queue = configure(monkeypatch, broker=RABBITMQ_URL, backend=POSTGRES_BACKEND)
    workers = workers_started(queue)
    executor = CeleryExecutor()
    executor.start()
    try:
        _check_success_and_failure(executor, dag_file, queue, workers)
    finally:
        _delete_amqp_queue(executor, queue)


def _delete_amqp_queue(executor: CeleryExecutor, queue: str) -> None:
    with executor.app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)


@pytest.mark.redis
def test_the_same_message_delivered_twice_runs_the_try_once(monkeypatch, dag_file, workers_started):
    """Two deliveries of one Celery task id (what a redelivery looks like) run the command once."""
    require_service("redis")
    queue = configure(monkeypatch, broker=REDIS_BROKER, backend=REDIS_BACKEND)
    workers_started(queue, concurrency=2, loglevel="INFO")
    executor = CeleryExecutor()
    key, cmd = command(dag_file, "slow")
    queue_command(executor, key, cmd, queue)
    executor.heartbeat()
    celery_id = executor.tasks[key]
    executor.app.tasks[EXECUTE_COMMAND_TASK].apply_async(args=[cmd], queue=queue, task_id=celery_id)
    final = run_until_done(executor, [key])
    assert final[key][0] == S.SUCCESS
    # And once more after the try finished: still one run, the result stays SUCCESS.
    late = executor.app.tasks[EXECUTE_COMMAND_TASK].apply_async(args=[cmd], queue=queue, task_id=celery_id)
    wait_for(lambda: broker_queue_length(queue) == 0, "the late message to be consumed")
    time.sleep(0.5)  # let the worker finish handling it (it must not run the command)
    assert late.state == states.SUCCESS
    assert len(runs(dag_file, "slow")) == 1


@pytest.mark.rabbitmq
@pytest.mark.redis
def test_a_worker_killed_mid_task_ends_the_try_failed_never_stuck_never_twice(monkeypatch, dag_file,
                                                                              workers_started):
    require_service("rabbitmq")
    require_service("redis")
    queue = configure(monkeypatch, broker=RABBITMQ_URL, backend=REDIS_BACKEND)
    doomed = workers_started(queue, concurrency=1, prefix="doomed-")
    executor = CeleryExecutor()
    key, cmd = command(dag_file, "hang")
    queue_command(executor, key, cmd, queue)
    try:
        executor.heartbeat()
        wait_for(lambda: runs(dag_file, "hang"), "the task to start")
        task_pid = int(runs(dag_file, "hang")[0])
        survivor = workers_started(queue, concurrency=1, prefix="survivor-")
        doomed.kill()  # SIGKILL the worker's whole process group
        final = run_until_done(executor, [key])
        state, reason = final[key]
        assert state == S.FAILED
        assert doomed.hostnames[0] in reason and "not run a second time" in reason
        assert survivor.hostnames[0] in reason  # the worker that got the redelivered message
        assert runs(dag_file, "hang") == [str(task_pid)]  # started once, never again
        wait_for(lambda: not _alive(task_pid), "the orphaned task to die with its pool process")
    finally:
        _delete_amqp_queue(executor, queue)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.mark.redis
def test_broker_down_publish_retries_then_fails_and_flows_again_when_back(monkeypatch, dag_file,
                                                                            workers_started):
    require_service("redis")
    proxy = TcpProxy(("127.0.0.1", REDIS_PORT))
    proxy.start()
    queue = configure(monkeypatch, broker=REDIS_BROKER, backend=REDIS_BACKEND)
    workers_started(queue)  # the workers reach Redis directly; only the scheduler's path breaks
    configure(monkeypatch, broker=f"redis://127.0.0.1:{proxy.port}/0", backend=REDIS_BACKEND,
              operation_timeout="0.5", task_publish_max_retries="1")
    executor = CeleryExecutor()
    try:
        first_key, first_cmd = command(dag_file, "hello")
        queue_command(executor, first_key, first_cmd, queue)
        assert run_until_done(executor, [first_key])[first_key][0] == S.SUCCESS

        proxy.stop()
        lost_key, lost_cmd = command(dag_file, "boom")
        queue_command(executor, lost_key, lost_cmd, queue)
        executor.heartbeat()
        assert lost_key in executor.queued_tasks  # first failure: still queued
        executor.heartbeat()
        state, reason = executor.get_event_buffer()[lost_key]
        assert state == S.FAILED
        assert reason.startswith("could not publish to the broker after 2 tries")

        proxy.start()
        back_key, back_cmd = command(dag_file, "hello", try_number=2)
        queue_command(executor, back_key, back_cmd, queue)
        assert run_until_done(executor, [back_key])[back_key][0] == S.SUCCESS
    finally:
        proxy.stop()


@pytest.mark.redis
def test_a_queue_without_workers_keeps_the_task_queued_and_a_revoke_stops_a_late_start(
        monkeypatch, dag_file, workers_started):
    require_service("redis")
    queue = configure(monkeypatch, broker=REDIS_BROKER, backend=REDIS_BACKEND)
    executor = CeleryExecutor()
    key, cmd = command(dag_file, "hello")
    queue_command(executor, key, cmd, queue)
    executor.heartbeat()
    assert executor.get_event_buffer()[key][0] == S.QUEUED
    for _ in range(5):
        executor.heartbeat()
        time.sleep(0.05)
    assert executor.get_event_buffer() == {}
    assert key in executor.running
    celery_id = executor.tasks[key]
    assert broker_queue_length(queue) == 1

    executor.cleanup_stuck_queued_tasks([FakeTI(key, external_executor_id=celery_id)])
    workers_started(queue)  # a worker for the queue turns up after all
    wait_for(lambda: broker_queue_length(queue) == 0, "the message to be consumed")
    time.sleep(0.5)
    assert runs(dag_file, "hello") == []
    assert executor.app.backend.get_task_meta(celery_id)["status"] == states.REVOKED


@pytest.mark.redis
def test_a_new_scheduler_adopts_a_running_task_and_records_its_outcome(monkeypatch, dag_file,
                                                                       workers_started):
    require_service("redis")
    queue = configure(monkeypatch, broker=REDIS_BROKER, backend=REDIS_BACKEND)
    workers_started(queue)
    first = CeleryExecutor()
    key, cmd = command(dag_file, "slow")
    queue_command(first, key, cmd, queue)
    first.heartbeat()
    _state, external_id = first.get_event_buffer()[key]
    del first  # the scheduler dies; the external id is what it recorded

    second = CeleryExecutor()
    assert second.try_adopt_task_instances([FakeTI(key, external_executor_id=external_id)]) == []
    final = run_until_done(second, [key])
    assert final[key][0] == S.SUCCESS
    assert len(runs(dag_file, "slow")) == 1


@pytest.mark.redis
def test_worker_cli_control_commands(monkeypatch, workers_started, tmp_path):
    require_service("redis")
    queue = configure(monkeypatch, broker=REDIS_BROKER, backend=REDIS_BACKEND)
    workers = workers_started(queue)
    name = workers.hostnames[0]

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "crossdock.cli.main", "celery", *args],
                              capture_output=True, text=True, timeout=WAIT_LIMIT, env=os.environ)

    listed = cli("list-workers")
    assert listed.returncode == 0, listed.stderr
    assert f"{name}\t{queue}" in listed.stdout
    extra = queue + "-extra"
    assert cli("add-queue", "-q", extra, "-H", name).returncode == 0
    assert f"{name}\t{','.join(sorted([queue, extra]))}" in cli("list-workers").stdout
    assert cli("remove-queue", "-q", extra, "-H", name).returncode == 0
    assert f"{name}\t{queue}\n" in cli("list-workers").stdout
    assert cli("shutdown-worker", "-H", name).returncode == 0
    wait_for(lambda: not workers.alive(), "the worker to shut down")
    missing = cli("shutdown-worker", "-H", "nobody@nowhere")
    assert missing.returncode == 1 and "did not answer" in missing.stderr


@pytest.mark.redis
def test_concurrent_claims_on_redis_have_exactly_one_winner(monkeypatch):
    require_service("redis")
    from concurrent.futures import ThreadPoolExecutor

    from crossdock.executors.celery_app import get_celery_app
    from crossdock.executors.celery_claim import claim_task

    configure(monkeypatch, broker=REDIS_BROKER, backend=REDIS_BACKEND)
    backend = get_celery_app().backend
    task_id = str(uuid.uuid4())
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda i: claim_task(backend, task_id, meta={"hostname": f"w{i}", "pid": i}),
                               range(8)))
    winners = [claim for claim in claims if claim.won]
    assert len(winners) == 1
    assert all(claim.meta == winners[0].meta for claim in claims if not claim.won)


@pytest.mark.redis
def test_sync_on_redis_reads_all_states_with_one_mget(monkeypatch):
    require_service("redis")
    queue = configure(monkeypatch, broker=REDIS_BROKER, backend=REDIS_BACKEND)
    executor = CeleryExecutor(parallelism=0)
    keys = []
    for i in range(25):
        key = TaskInstanceKey("celery_it", f"t{i}", "run1", 1)
        executor.queue_command(FakeTI(key), ["crossdock", "tasks", "run", "celery_it", f"t{i}", "run1",
                                             "--try-number", "1"], queue=queue)
        keys.append(key)
    executor.heartbeat()
    backend = executor.app.backend
    for key in keys[:5]:
        backend.store_result(executor.tasks[key], {"exit_code": 0}, states.SUCCESS)
    calls = []
    for name in ("mget", "get"):
        real = getattr(backend, name)
        monkeypatch.setattr(backend, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    executor.sync()
    assert calls == ["mget"]
    assert {k for k, (state, _) in executor.get_event_buffer().items() if state == S.SUCCESS} == set(keys[:5])
    executor.app.tasks  # the 20 unconsumed messages stay in a queue nobody reads
    import redis

    redis.Redis.from_url(REDIS_BROKER).delete(queue)


@pytest.mark.redis
def test_on_redis_a_killed_worker_is_noticed_by_ping_and_its_try_fails_not_reruns(monkeypatch, dag_file,
                                                                                 workers_started):
    """Redis redelivers only after the visibility timeout; the executor's worker pings end the wait."""
    require_service("redis")
    queue = configure(monkeypatch, broker=REDIS_BROKER, backend=REDIS_BACKEND,
                      worker_lost_check_interval="0.2", operation_timeout="0.5")
    doomed = workers_started(queue, concurrency=1, prefix="doomed-")
    executor = CeleryExecutor()
    key, cmd = command(dag_file, "hang")
    queue_command(executor, key, cmd, queue)
    executor.heartbeat()
    wait_for(lambda: runs(dag_file, "hang"), "the task to start")
    celery_id = executor.tasks[key]
    doomed.kill()
    state, reason = run_until_done(executor, [key])[key]
    assert state == S.FAILED
    assert doomed.hostnames[0] in reason and "stopped answering" in reason
    assert executor.app.backend.get_task_meta(celery_id)["status"] == states.FAILURE
    # The message comes back some day (visibility timeout): it must not run the try again.
    workers_started(queue, concurrency=1, prefix="survivor-")
    executor.app.tasks[EXECUTE_COMMAND_TASK].apply_async(args=[cmd], queue=queue, task_id=celery_id)
    wait_for(lambda: broker_queue_length(queue) == 0, "the redelivered message to be consumed")
    time.sleep(0.5)
    assert len(runs(dag_file, "hang")) == 1
    assert executor.app.backend.get_task_meta(celery_id)["status"] == states.FAILURE


@pytest.mark.redis
def test_flower_serves_the_real_ui_behind_basic_auth(monkeypatch):
    require_service("redis")
    import urllib.error
    import urllib.request
    from base64 import b64encode

    configure(monkeypatch, broker=REDIS_BROKER, backend=REDIS_BACKEND)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flower = subprocess.Popen([sys.executable, "-m", "crossdock.cli.main", "celery", "flower", "--hostname",
                               "127.0.0.1", "--port", str(port), "--basic-auth", "admin:secret"],
                              env=os.environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/workers"

    def status(auth: str | None) -> int | None:
        request = urllib.request.Request(url)
        if auth:
            request.add_header("Authorization", "Basic " + b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    try:
        assert wait_for(lambda: status(None), "flower to listen") == 401
        assert status("admin:wrong") == 401
        assert status("admin:secret") == 200
    finally:
        os.killpg(flower.pid, signal.SIGTERM)
        try:
            flower.wait(10)
        except subprocess.TimeoutExpired:  # an inspect call of Flower's may hold it up under load
            os.killpg(flower.pid, signal.SIGKILL)
            flower.wait(10)
