"""The worker's side of a claim after it was won: keep it alive, then settle it for real.

A claim (see :mod:`crossdock.executors.celery_claim`) is the record that says "this try
runs here". Three things can go wrong with it while the try runs, and this module, one
keeper per pool process, answers each:

* **The worker dies.** A dead worker's claim would read STARTED forever. The keeper
  renews the claim every ``[celery] try_lease_renew_interval`` seconds (a fresh
  ``renewed_at`` in its record), so the scheduler can tell a try whose lease stopped
  changing from one that is merely long (see :mod:`crossdock.executors.celery_try_lease`).
* **A Redis result backend restarts empty.** The claim vanishes with it, and a message
  published again for the same try would win a new claim and run it twice. Each renewal
  puts a missing record back, and the records of tries that ended in the last
  ``FINISHED_RECORD_KEEP`` seconds are put back too (if the scheduler had not read them
  yet, it would otherwise see the try as never started).
* **The backend is down when the try ends.** Celery would give up on the result write and
  later record the try FAILURE, so finished work would run again. :meth:`ClaimKeeper.settle`
  keeps retrying the write (while the lease goes on being renewed) until it lands or
  ``RESULT_WRITE_PATIENCE`` passes.

Every write replaces only the keeper's own STARTED record (or nothing): a REVOKED mark or
a "lost" verdict written by the scheduler meanwhile stands, and the keeper stops. A try
still running here when that happens (its worker was frozen or cut off for longer than the
lease, and the scheduler has run it again elsewhere) is stopped: the keeper signals the
pool process's main thread, whose wait for the try then ends in :class:`ClaimTakenOver`,
and the runner kills the try on the way out, so the work does not finish twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from celery import states

from crossdock.configuration import conf
from crossdock.exceptions import CrossdockError
from crossdock.executors.celery_claim import claim_task, replace_own_claim

log = logging.getLogger("crossdock.executors.celery_claim_keeper")

#: Seconds after its end a finished try's record is put back if a Redis backend lost it.
FINISHED_RECORD_KEEP = 120.0
#: Seconds between two attempts to write a try's outcome while the backend is down.
RESULT_WRITE_RETRY_INTERVAL = 0.5
#: Seconds a pool process keeps retrying an outcome before it gives the write up.
RESULT_WRITE_PATIENCE = 3600.0
#: Signal the keeper sends its pool process's main thread to stop a try given up elsewhere
#: (neither Celery nor billiard uses it in pool processes).
STOP_SIGNAL = signal.SIGUSR2


class ClaimTakenOver(CrossdockError):
    """The try's claim was replaced (given up as lost, or revoked) while it ran here."""


class ClaimKeeper:
    """Renews the claims of the tries one pool process runs, and writes their outcomes.

    :param backend: the Celery result backend the claims live in.
    :param renew_interval: seconds between renewals; 0 or less renews nothing (no lease).
    """

    def __init__(self, backend: Any, *, renew_interval: float):
        self.backend = backend
        self.renew_interval = renew_interval
        self._lock = threading.Lock()
        #: task id -> (claim token, STARTED meta) of tries running here.
        self._running: dict[str, tuple[str, dict[str, Any]]] = {}
        #: task id -> (state, meta, keep until) of tries that ended here recently.
        self._finished: dict[str, tuple[str, Any, float]] = {}
        self._thread: threading.Thread | None = None
        self._wiped_backend = _can_lose_records(backend)
        #: the task id the main thread waits on inside :meth:`stop_on_takeover`, and its ident.
        self._stoppable: str | None = None
        self._main_ident: int | None = None
        self._taken_over: str | None = None
        self._handler_installed = False

    # -- the try's thread ----------------------------------------------------------------
    def hold(self, task_id: str, claim: str, meta: dict[str, Any]) -> None:
        """Keep the STARTED record of a claim this process won alive until :meth:`settle`."""
        with self._lock:
            self._running[task_id] = (claim, dict(meta))
        self._ensure_thread()

    @contextmanager
    def stop_on_takeover(self, task_id: str) -> Iterator[None]:
        """While inside, a takeover of ``task_id``'s claim raises :class:`ClaimTakenOver` here.

        Only in a process's main thread (signals reach no other); elsewhere it does nothing.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        if not self._handler_installed:
            signal.signal(STOP_SIGNAL, self._on_stop_signal)
            self._handler_installed = True
        self._main_ident = threading.get_ident()
        self._stoppable = task_id
        try:
            yield
        finally:
            self._stoppable = None
            self._taken_over = None

    def _on_stop_signal(self, _signum: int, _frame: Any) -> None:
        taken, self._taken_over = self._taken_over, None
        if taken is not None and taken == self._stoppable:
            raise ClaimTakenOver(taken)

    def _stop_taken_over(self, task_id: str) -> None:
        if self._stoppable != task_id or self._main_ident is None:
            return
        self._taken_over = task_id
        try:
            signal.pthread_kill(self._main_ident, STOP_SIGNAL)
        except (OSError, ValueError):  # the thread is gone
            self._taken_over = None

    def release(self, task_id: str) -> None:
        """Stop renewing a claim whose try ended without an outcome of ours (Celery records it)."""
        with self._lock:
            self._running.pop(task_id, None)

    def settle(self, task_id: str, claim: str, state: str, meta: Any) -> bool:
        """Write the try's outcome over its claim, retrying while the backend is unreachable.

        True once written; False if someone else decided on the id meanwhile (the
        scheduler gave the try up as lost, or revoked it) or the write never got through.
        """
        deadline = time.monotonic() + RESULT_WRITE_PATIENCE
        failures = 0
        with self._lock:  # no renewal from here on: a renewal racing the outcome would find
            self._running.pop(task_id, None)  # it and take the try for taken over
        try:
            while True:
                try:
                    written = replace_own_claim(self.backend, task_id, claim=claim, state=state, meta=meta)
                except Exception as exc:  # noqa: BLE001 - any backend error is worth another try
                    failures += 1
                    if failures == 1:
                        log.warning("celery task %s: could not store its %s outcome (%s); retrying every "
                                    "%.1f s until the result backend takes it", task_id, state,
                                    _one_line(exc), RESULT_WRITE_RETRY_INTERVAL)
                    if time.monotonic() > deadline:
                        log.error("celery task %s: gave up storing its %s outcome after %.0f s", task_id,
                                  state, RESULT_WRITE_PATIENCE)
                        return False
                    time.sleep(RESULT_WRITE_RETRY_INTERVAL)
                    continue
                if not written:
                    log.warning("celery task %s: its outcome %s was not stored: the try was decided on "
                                "elsewhere meanwhile (given up as lost or revoked)", task_id, state)
                    return False
                if failures:
                    log.warning("celery task %s: stored its %s outcome after %d failed attempts", task_id,
                                state, failures)
                if self._wiped_backend:
                    with self._lock:
                        self._finished[task_id] = (state, meta, time.monotonic() + FINISHED_RECORD_KEEP)
                return True
        finally:
            with self._lock:
                self._running.pop(task_id, None)

    # -- the keeper's thread ---------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self.renew_interval <= 0 and not self._wiped_backend:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._loop, name="crossdock-claim-keeper", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = self.renew_interval if self.renew_interval > 0 else 1.0
        while True:
            time.sleep(interval)
            try:
                self.renew_once()
            except Exception:  # noqa: BLE001 - the keeper must outlive any one bad round
                log.exception("claim keeper round failed")

    def renew_once(self) -> None:
        """One round: renew running claims, put back finished records a backend lost."""
        with self._lock:
            running = list(self._running.items())
            now = time.monotonic()
            self._finished = {k: v for k, v in self._finished.items() if v[2] > now}
            finished = list(self._finished.items())
        for task_id, (claim, meta) in running:
            renewed = {**meta, "renewed_at": time.time()} if self.renew_interval > 0 else meta
            try:
                kept = replace_own_claim(self.backend, task_id, claim=claim, state=states.STARTED, meta=renewed)
            except Exception as exc:  # noqa: BLE001 - the backend is down: next round
                log.debug("could not renew the claim on celery task %s: %s", task_id, _one_line(exc))
                continue
            if not kept:
                with self._lock:
                    still_running = self._running.pop(task_id, None) is not None
                if not still_running:
                    continue  # the try's own outcome was written meanwhile
                log.warning("celery task %s: its claim was replaced (the try was given up as lost or "
                            "revoked); stopping the try if it still runs here", task_id)
                self._stop_taken_over(task_id)
        if finished:
            self._restore_missing(finished)

    def _restore_missing(self, finished: list[tuple[str, tuple[str, Any, float]]]) -> None:
        backend = self.backend
        try:
            values = backend.mget([backend.get_key_for_task(task_id) for task_id, _ in finished])
        except Exception as exc:  # noqa: BLE001
            log.debug("could not check finished records: %s", _one_line(exc))
            return
        for (task_id, (state, meta, _until)), value in zip(finished, values):
            if value:
                continue
            try:
                if claim_task(backend, task_id, state=state, meta=meta).won:
                    log.warning("celery task %s: its %s record was missing from the result backend "
                                "(restarted empty?) and was written again", task_id, state)
            except Exception as exc:  # noqa: BLE001
                log.debug("could not restore celery task %s: %s", task_id, _one_line(exc))


def _can_lose_records(backend: Any) -> bool:
    """Whether records can vanish under us: a Redis backend may restart with nothing."""
    try:
        from celery.backends.redis import RedisBackend
    except ImportError:
        return False
    return isinstance(backend, RedisBackend)


_keeper: ClaimKeeper | None = None
_keeper_lock = threading.Lock()


def claim_keeper(backend: Any) -> ClaimKeeper:
    """This process's keeper (one per pool process; rebuilt if the backend object changed)."""
    global _keeper
    with _keeper_lock:
        if _keeper is None or _keeper.backend is not backend:
            _keeper = ClaimKeeper(backend, renew_interval=conf.getfloat("celery", "try_lease_renew_interval"))
        return _keeper


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
