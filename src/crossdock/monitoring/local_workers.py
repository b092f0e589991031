"""The autoscaler's local driver: one ``crossdock celery worker -q QUEUE`` process per worker.

What ``crossdock standalone`` scales. Each worker is an embedded worker
(:func:`~crossdock.executors.celery_worker.start_embedded_workers`): a real worker process
in its own process group, without the metadata database settings, tied to this process
by the kernel's parent-death signal, under a Celery node name of its own
(``QUEUE.wN-0-PID@HOST``) so that control requests reach exactly it.

Every start goes through one thread that lives as long as the process: the kernel ties a
child to the *thread* that forked it, and the autoscaler's thread (the queue monitor's)
ends at shutdown, before the workers have finished their warm shutdown. That thread
starts workers in turn, at most half the CPU count at once (one on two cores): a worker
boots its pool processes and their zygotes, and four booting side by side on two cores
all consume about when one after another the last would (the first task of a burst then
waits for all four, 4.7 s measured, instead of for one, 0.9 s). A worker asked for and
not started yet counts toward the queue's size, and is the first to go when it shrinks.

Scale-down is drain-first (:mod:`crossdock.monitoring.worker_drain`): of the queue's
consuming workers the idle ones are retired first, then the least busy. A retired
worker is asked to stop consuming, and :meth:`LocalWorkerPool.tick` (never blocking on
the work itself) asks it what it still holds until the answer is nothing; then it is
stopped. One still busy after ``[worker_queues] drain_grace`` is reported with its tasks
and left running: a scale-down never kills a running task.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from crossdock.configuration import conf
from crossdock.executors.celery_worker import DEFAULT_READY_TIMEOUT, start_embedded_workers
from crossdock.monitoring.queue_status import QueueStatus
from crossdock.monitoring.worker_drain import describe_request, held_tasks, quiet_workers, stop_embedded
from crossdock.monitoring.worker_queues import WorkerQueues
from crossdock.processes import describe_exit, mark_thread_lasting

log = logging.getLogger("crossdock.monitoring.autoscaler")

#: Log level of the local worker processes (their warnings reach the terminal).
DEFAULT_WORKER_LOGLEVEL = "WARNING"
#: Fewest pool processes of a local worker whose queue names no ``max_tasks_per_worker``.
MIN_LOCAL_CONCURRENCY = 2

#: Workers booting at once: half the CPUs (at least one).
DEFAULT_STARTS_AT_ONCE = max(1, (os.cpu_count() or 2) // 2)
#: Seconds between the start thread's looks at booting workers.
START_POLL_INTERVAL = 0.05

PENDING, STARTING, READY, DRAINING = "pending", "starting", "ready", "draining"


def local_worker_concurrency() -> int:
    """Pool processes of a local worker: ``[celery] worker_concurrency``, at most the CPU count (≥ 2).

    One machine: more pool processes than cores only adds start-up time and memory.
    """
    import crossdock.executors.celery_app  # noqa: F401 - declares [celery]

    return min(conf.getint("celery", "worker_concurrency"), max(MIN_LOCAL_CONCURRENCY, os.cpu_count() or 2))


def _node_name(queue: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", queue) or "queue"


@dataclass
class LocalWorker:
    """One worker process of the pool, and where it is in its life."""

    queue: str
    serial: int
    hostname: str = ""  # its Celery node name, known once started
    processes: Any = None  # EmbeddedWorkers of one worker, once started
    started_at: float = 0.0
    state: str = PENDING
    draining_since: float | None = None
    busy_when_retired: bool = False
    reported: bool = False

    @property
    def pid(self) -> int | None:
        return self.processes.processes[0].pid if self.processes else None

    def exit_code(self) -> int | None:
        return self.processes.processes[0].poll() if self.processes else None


def choose_retirees(hostnames: list[str], loads: dict[str, int | None], count: int) -> list[str]:
    """The ``count`` workers to retire: idle ones first, then the least busy, unknown ones last."""
    def key(name: str) -> tuple[bool, int]:
        load = loads.get(name)
        return load is None, load or 0

    return sorted(hostnames, key=key)[:max(0, count)]


class LocalWorkerPool:
    """Worker processes on this machine, per queue (the ``local`` driver of the autoscaler).

    :param worker_queues: each queue's bounds (default: read from ``[worker_queues]``).
    :param concurrency: pool processes of a worker whose queue names no
        ``max_tasks_per_worker`` (default :func:`local_worker_concurrency`); a queue that
        names one (or a non-zero ``default_max_tasks_per_worker``) gets that many.
    :param drain_grace: seconds a retired worker may take to finish what it runs before it
        is reported (default ``[worker_queues] drain_grace``); it is never killed for it.
    :param app: the Celery app that sends control requests (default: crossdock's).
    :param loglevel: log level of the worker processes.
    :param ready_timeout: seconds a new worker may take to consume before it is stopped
        and no longer counted.
    :param starts_at_once: workers booting at the same time (default :data:`DEFAULT_STARTS_AT_ONCE`).
    """

    driver = "local"

    def __init__(self, *, worker_queues: WorkerQueues | None = None, concurrency: int | None = None,
                 drain_grace: float | None = None, app: Any = None, loglevel: str = DEFAULT_WORKER_LOGLEVEL,
                 ready_timeout: float = DEFAULT_READY_TIMEOUT, starts_at_once: int | None = None) -> None:
        self.worker_queues = worker_queues or WorkerQueues.from_config()
        self.concurrency = concurrency or local_worker_concurrency()
        self.drain_grace = conf.getfloat("worker_queues", "drain_grace") if drain_grace is None else drain_grace
        self.loglevel = loglevel
        self.ready_timeout = ready_timeout
        self.starts_at_once = max(1, starts_at_once or DEFAULT_STARTS_AT_ONCE)
        self._app = app
        self._closed = False
        self._workers: list[LocalWorker] = []
        self._serial = itertools.count()
        self._lock = threading.RLock()
        # One lasting thread starts every worker, so the kernel ties each to this process.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossdock-worker-spawner")
        self._spawner.submit(mark_thread_lasting).result()

    @property
    def app(self) -> Any:
        if self._app is None:
            from crossdock.executors.celery_app import get_celery_app

            self._app = get_celery_app()
        return self._app

    # -- reading ---------------------------------------------------------------------------
    def workers(self, queue: str | None = None) -> list[LocalWorker]:
        """The pool's workers (of ``queue``): pending, starting, consuming and draining."""
        with self._lock:
            return [w for w in self._workers if queue is None or w.queue == queue]

    def actual_workers(self, queue: str) -> int:
        with self._lock:
            return sum(1 for w in self._workers if w.queue == queue and w.state != DRAINING)

    def draining_workers(self, queue: str) -> list[str]:
        with self._lock:
            return [w.hostname for w in self._workers if w.queue == queue and w.state == DRAINING]

    def processes_per_worker(self, queue: str) -> int:
        """Pool processes a new worker of ``queue`` gets (see the ``concurrency`` parameter)."""
        entry = (conf.getjson("worker_queues", "queues") or {}).get(queue) or {}
        if "max_tasks_per_worker" in entry or conf.getint("worker_queues", "default_max_tasks_per_worker") > 0:
            return self.worker_queues.spec_for(queue).max_tasks_per_worker
        return self.concurrency

    # -- scaling ---------------------------------------------------------------------------
    def scale_up(self, queue: str, count: int, status: QueueStatus | None = None) -> None:
        """Ask for ``count`` more workers; the start thread boots them in turn (returns at once)."""
        with self._lock:
            if self._closed:
                return
            self._workers.extend(LocalWorker(queue=queue, serial=next(self._serial)) for _ in range(count))
        self._spawner.submit(self._start_pending)

    def _start_pending(self) -> None:
        """On the start thread: boot pending workers, ``starts_at_once`` at a time, until none is left."""
        while True:
            with self._lock:
                self._promote_ready()
                pending = [w for w in self._workers if w.state == PENDING]
                if self._closed or not pending:
                    return
                booting = sum(1 for w in self._workers if w.state == STARTING and w.exit_code() is None)
                for worker in pending[:max(0, self.starts_at_once - booting)]:
                    try:
                        self._start(worker)
                    except Exception:  # noqa: BLE001 - not counted: the next decision asks again
                        self._workers.remove(worker)
                        log.exception("autoscaler: could not start a local worker for queue %s", worker.queue)
            time.sleep(START_POLL_INTERVAL)

    def _start(self, worker: LocalWorker) -> None:
        worker.processes = start_embedded_workers(
            queues=[worker.queue], concurrency=self.processes_per_worker(worker.queue),
            hostname_prefix=f"{_node_name(worker.queue)}.w{worker.serial}-", loglevel=self.loglevel, wait=False)
        worker.hostname, worker.state, worker.started_at = (worker.processes.hostnames[0], STARTING,
                                                            time.monotonic())

    def scale_down(self, queue: str, count: int, status: QueueStatus | None = None) -> list[str]:
        """Retire ``count`` workers of ``queue``: not yet started ones, then idle ones first; their names.

        Workers still booting are not chosen (they cannot say yet what they hold): fewer
        than ``count`` may be retired, and the next decision asks again.
        """
        if count <= 0:
            return []
        with self._lock:
            pending = [w for w in self._workers if w.queue == queue and w.state == PENDING][-count:]
            for worker in pending:
                self._workers.remove(worker)
            count -= len(pending)
            retired_names = [f"{_node_name(queue)}.w{w.serial} (not started)" for w in pending]
            if count <= 0:
                return retired_names
            candidates = [w for w in self._workers if w.queue == queue and w.state == READY]
            loads: dict[str, int | None] = {}
            for host in (status.worker_hosts if status is not None else ()):
                loads[host.hostname] = host.active + host.reserved
            unknown = [w.hostname for w in candidates if w.hostname not in loads]
            if unknown:
                try:
                    loads.update({name: len(held) for name, held in held_tasks(self.app.control, unknown).items()})
                except Exception:  # noqa: BLE001 - unknown load: chosen last
                    log.debug("could not ask %s what they hold", unknown, exc_info=True)
            chosen = set(choose_retirees([w.hostname for w in candidates], loads, count))
            now = time.monotonic()
            retired = [w for w in candidates if w.hostname in chosen]
            for worker in retired:
                worker.state, worker.draining_since = DRAINING, now
                worker.busy_when_retired = loads.get(worker.hostname) != 0
            self._advance_drains(retired)
            return retired_names + [w.hostname for w in retired]

    def tick(self) -> None:
        """Notice exited and ready workers, stop drained ones, report those past the drain grace."""
        with self._lock:
            self._reap_exited()
            self._promote_ready()
            self._advance_drains([w for w in self._workers if w.state == DRAINING])

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        """Block until every worker asked for consumes; raise if one exits first or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            booting = [w for w in self.workers() if w.state in (PENDING, STARTING)]
            if not booting:
                return
            for worker in booting:
                if worker.state == STARTING:
                    worker.processes.wait_ready(max(0.0, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise TimeoutError(f"local celery workers not consuming after {timeout:.0f} s")
            time.sleep(START_POLL_INTERVAL)
            self.tick()

    def close(self) -> None:
        """Stop every worker: idle ones at once, busy ones warm (their running tasks finish)."""
        with self._lock:
            self._closed = True
            workers, self._workers = [w for w in self._workers if w.processes is not None], []
        if workers:
            stop_embedded([(w.processes, {w.hostname: [w.queue]} if w.state != STARTING else {})
                           for w in workers], app=self.app)
        self._spawner.shutdown(wait=False)

    # -- the steps of tick -----------------------------------------------------------------
    def _reap_exited(self) -> None:
        for worker in list(self._workers):
            code = worker.exit_code()
            if code is None:
                continue
            self._workers.remove(worker)
            worker.processes.stop(timeout=1.0)  # kills what is left of its group, removes its files
            what = " while draining; what it held may be lost" if worker.state == DRAINING else \
                "; no longer counted, the next decision replaces it"
            log.warning("autoscaler: local worker %s of queue %s %s%s", worker.hostname, worker.queue,
                        describe_exit(code), what)

    def _promote_ready(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.state != STARTING:
                continue
            if worker.processes.ready():
                worker.state = READY
            elif now - worker.started_at > self.ready_timeout:
                self._workers.remove(worker)
                worker.processes.stop(timeout=1.0)
                log.warning("autoscaler: local worker %s of queue %s did not consume within %.0f s; stopped it, "
                            "no longer counted", worker.hostname, worker.queue, self.ready_timeout)

    def _advance_drains(self, draining: list[LocalWorker]) -> None:
        """Stop each draining worker that holds nothing; report those past the grace."""
        if not draining:
            return
        try:
            idle, busy = quiet_workers(self.app.control, {w.hostname: [w.queue] for w in draining})
        except Exception as exc:  # noqa: BLE001 - asked again at the next tick
            log.debug("could not ask draining workers what they hold: %s", exc)
            idle, busy = set(), {}
        now = time.monotonic()
        for worker in draining:
            if worker.hostname in idle:
                self._workers.remove(worker)
                worker.processes.kill()  # idle, and consuming nothing: nothing to lose
                worker.processes.stop(timeout=1.0)
                level = logging.INFO if worker.busy_when_retired else logging.DEBUG
                log.log(level, "autoscaler: local worker %s of queue %s drained after %.1f s; stopped",
                        worker.hostname, worker.queue, now - (worker.draining_since or now))
            elif not worker.reported and now - (worker.draining_since or now) > self.drain_grace:
                worker.reported = True
                held = busy.get(worker.hostname)
                tasks = ", ".join(describe_request(r) for r in held) if held else "it does not answer"
                log.warning("autoscaler: local worker %s of queue %s still busy %.0f s after it was retired "
                            "([worker_queues] drain_grace): %s; left running, not killed", worker.hostname,
                            worker.queue, now - (worker.draining_since or now), tasks)
