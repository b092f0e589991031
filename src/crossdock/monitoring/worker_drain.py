"""Taking a Celery worker out of service without losing what it runs.

Two users: the local autoscaler driver retiring a worker (drain-first scale-down) and
``crossdock standalone`` stopping its workers at exit. Both first ask the worker to stop
consuming its queues (``cancel_consumer``), then ask what it still holds (``inspect``
``active`` and ``reserved``). A worker handles control messages one after another and
replies in the order they came, so once both replies are in no message can have slipped
in between: a worker that answers "nothing" is idle for good and may be killed outright,
its pool processes and zygotes dying with it. That matters on a polling broker such as
the serverless filesystem one, where a warm shutdown (SIGTERM) of even an idle worker
costs seconds (Celery's blocking consumer finishes its 2 s ``drain_events`` wait and runs
one more, the pool's and timer's threads are joined on 1 s ticks: about 7 s measured).
A busy worker, or one that does not answer, gets the warm shutdown, which lets running
tries finish.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

log = logging.getLogger("crossdock.monitoring.worker_drain")

#: Seconds each control request to a worker waits for its reply.
CONTROL_REPLY_TIMEOUT = 1.0


def stop_consuming(control: Any, consuming: dict[str, list[str]], *,
                   timeout: float = CONTROL_REPLY_TIMEOUT) -> set[str]:
    """Ask each worker (hostname → its queues) to stop consuming them; the hostnames that confirmed all."""
    by_queue: dict[str, list[str]] = {}
    for hostname, queues in consuming.items():
        for queue in queues:
            by_queue.setdefault(queue, []).append(hostname)
    confirmed = set(consuming)
    for queue, hostnames in by_queue.items():
        replies = control.cancel_consumer(queue, destination=hostnames, reply=True, timeout=timeout,
                                          limit=len(hostnames)) or []
        answered = {name for reply in replies for name in reply}
        confirmed &= answered | (set(consuming) - set(hostnames))
    return confirmed


def held_tasks(control: Any, hostnames: Iterable[str], *,
               timeout: float = CONTROL_REPLY_TIMEOUT) -> dict[str, list[dict]]:
    """``hostname → requests it runs or holds`` (active and reserved); one that did not answer is absent."""
    hostnames = list(hostnames)
    if not hostnames:
        return {}
    inspect = control.inspect(destination=hostnames, timeout=timeout, limit=len(hostnames))
    active, reserved = inspect.active() or {}, inspect.reserved() or {}
    return {name: [*(active[name] or ()), *(reserved[name] or ())]
            for name in hostnames if name in active and name in reserved}


def quiet_workers(control: Any, consuming: dict[str, list[str]], *,
                  timeout: float = CONTROL_REPLY_TIMEOUT) -> tuple[set[str], dict[str, list[dict]]]:
    """Stop the workers consuming, then ask what they hold: (idle hostnames, busy hostname → held).

    A worker that did not confirm or did not answer is in neither: nobody knows what it holds.
    """
    confirmed = stop_consuming(control, consuming, timeout=timeout)
    held = held_tasks(control, sorted(confirmed), timeout=timeout)
    idle = {name for name, requests in held.items() if not requests}
    return idle, {name: requests for name, requests in held.items() if requests}


def describe_request(request: dict) -> str:
    """One held Celery request as a user reads it: ``dag.task[map] run r1 try 1 (celery id …)``."""
    args = request.get("args") or []
    command = args[0] if args and isinstance(args[0], list) else []
    if len(command) >= 6 and command[:3] == ["crossdock", "tasks", "run"]:
        options = dict(zip(command[6::2], command[7::2]))
        mapped = f"[{options['--map-index']}]" if "--map-index" in options else ""
        what = f"{command[3]}.{command[4]}{mapped} run {command[5]} try {options.get('--try-number', '1')}"
    else:
        what = request.get("name") or "a task"
    return f"{what} (celery id {request.get('id')})"


def stop_embedded(units: list[tuple[Any, dict[str, list[str]]]], *, app: Any = None,
                  timeout: float = CONTROL_REPLY_TIMEOUT) -> None:
    """Stop embedded worker groups at once: idle ones killed outright, the rest warm, all in parallel.

    :param units: ``(EmbeddedWorkers, {hostname: queues it consumes})`` for each group; a
        group is killed only when every worker in it is confirmed idle (an empty map: not
        asked, stopped warm).
    :param app: the Celery app to send control requests with (default: crossdock's).
    """
    alive = [(workers, consuming) for workers, consuming in units if consuming and workers.alive()]
    idle: set[str] = set()
    if alive:
        try:
            if app is None:
                from crossdock.executors.celery_app import get_celery_app

                app = get_celery_app()
            idle, _ = quiet_workers(app.control, {host: queues for _, consuming in alive
                                                  for host, queues in consuming.items()}, timeout=timeout)
        except Exception:  # noqa: BLE001 - when in doubt, the warm shutdown is the safe way
            log.warning("could not tell whether the workers are idle; stopping them warm", exc_info=True)
    for workers, consuming in alive:
        if consuming and set(consuming) <= idle:
            workers.kill()
    if len(units) == 1:
        units[0][0].stop()  # reaps, kills any straggler, removes the pid and ready files
        return
    with ThreadPoolExecutor(max(1, len(units))) as pool:  # warm shutdowns wait side by side
        list(pool.map(lambda unit: unit[0].stop(), units))


class IdleAwareWorkerStop:
    """Stops one group of embedded workers at once when it runs nothing, warm when it does.

    :param workers: the :class:`~crossdock.executors.celery_worker.EmbeddedWorkers` to stop.
    :param queues: the queues each of them consumes.
    """

    def __init__(self, workers: Any, queues: list[str]) -> None:
        self.workers = workers
        self.queues = list(queues)

    def stop(self) -> None:
        stop_embedded([(self.workers, {host: self.queues for host in self.workers.hostnames})])
