"""CeleryExecutor: task commands become Celery messages; long-lived workers run them.

The scheduler-side half of the Celery path. Behaviour follows Airflow's CeleryExecutor,
with three differences that close the gaps where Airflow can lose or duplicate a try:

* The Celery task id is chosen here and reported to the scheduler (a QUEUED event whose
  info is the id, stored as the task instance's ``external_executor_id``) *before* the
  message is published, so a scheduler that dies right after publishing leaves a task a
  new scheduler can adopt, never an orphan.
* Publishing has a timeout and a retry budget counted in heartbeats; the task stays
  queued between tries and fails with the broker's error once the budget is spent.
* Workers claim the id in the result backend before running (see ``celery_claim``), so a
  redelivered message never runs a try twice; a revoked queued task is claimed as
  REVOKED here so that a late delivery cannot start it either.
* Workers renew each claim while the try runs; a try whose lease stops moving lost its
  worker and is reported as an infrastructure loss, which the scheduler does not charge
  to the task's retries (``celery_try_lease``). A Redis broker that comes back empty has
  the tries it lost published again (``celery_republish``). An outage of the broker or
  backend is logged once when it starts and once when it ends (``celery_outage_log``).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Sequence

from celery import states
from celery.exceptions import TaskRevokedError

from crossdock.configuration import conf
from crossdock.executors.base_executor import PARALLELISM, BaseExecutor, CommandType, task_command_of
from crossdock.executors.celery_app import get_celery_app
from crossdock.executors.celery_claim import claim_task, replace_own_claim
from crossdock.executors.celery_outage_log import OutageLog
from crossdock.executors.celery_protocol import EXECUTE_COMMAND_TASK, TaskLostError
from crossdock.executors.celery_republish import BrokerLossWatch
from crossdock.executors.celery_state_fetcher import TaskState, fetch_states
from crossdock.executors.celery_try_lease import TryLeaseWatch
from crossdock.executors.task_event import TaskEvent
from crossdock.executors.task_signing import signature_kwargs
from crossdock.models.taskinstancekey import TaskInstanceKey
from crossdock.state import TaskInstanceState

if TYPE_CHECKING:
    from celery import Celery

    from crossdock.models.taskinstance import TaskInstance

#: Seconds ``end(synchronous=True)`` waits between state fetches.
END_POLL_INTERVAL = 0.1
#: Pings in a row a worker must miss before its running tasks are given up as lost.
LOST_WORKER_MISSED_PINGS = 2
#: Exceptions that mean "the broker could not be reached", as opposed to a bad message.
_NOT_RETRYABLE = (TypeError, ValueError)


class CeleryExecutor(BaseExecutor):
    """Sends each task command to the Celery queue named by the task's ``queue``.

    :param parallelism: most tasks in flight at once; 0 means no limit.
    """

    supports_ad_hoc_ti_run = True
    supports_sentry = True
    is_production = True
    is_local = False

    def __init__(self, parallelism: int = PARALLELISM):
        super().__init__(parallelism=parallelism)
        self._app: Celery | None = None
        #: key -> Celery task id of every task published or adopted and not yet finished.
        self.tasks: dict[TaskInstanceKey, str] = {}
        #: key -> Celery task id chosen for a queued task (kept across publish retries).
        self._assigned_ids: dict[TaskInstanceKey, str] = {}
        #: key -> publish attempts that failed so far.
        self.task_publish_retries: dict[TaskInstanceKey, int] = {}
        self._reported_running: set[TaskInstanceKey] = set()
        self.worker_lost_check_interval = conf.getfloat("celery", "worker_lost_check_interval")
        self._last_worker_check = time.monotonic()
        self._missed_pings: dict[str, int] = {}
        self.task_publish_max_retries = conf.getint("celery", "task_publish_max_retries")
        self.operation_timeout = conf.getfloat("celery", "operation_timeout")
        self.default_queue = conf.getstr("core", "default_queue")
        sync_parallelism = conf.getint("celery", "sync_parallelism")
        self._sync_parallelism = sync_parallelism or max(1, (_cpu_count() - 1))
        self._outage = OutageLog(self.log, what=type(self).__name__)
        self._leases = TryLeaseWatch(timeout=conf.getfloat("celery", "try_lease_timeout"))
        self._loss_watch = BrokerLossWatch(check_interval=conf.getfloat("celery", "broker_loss_check_interval"),
                                           grace=conf.getfloat("celery", "republish_grace"),
                                           timeout=self.operation_timeout, log=self.log)

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def app(self) -> "Celery":
        if self._app is None:
            self._app = get_celery_app()
        return self._app

    def start(self) -> None:
        self.log.info("CeleryExecutor using broker %s and result backend %s",
                      _redact(self.app.conf.broker_url), _redact(self.app.conf.result_backend))
        renew = conf.getfloat("celery", "try_lease_renew_interval")
        if self._loss_watch.check_interval > 0 and self._loss_watch.grace < 2 * renew:
            # Within the grace every worker must have put back the claims a Redis lost;
            # a try published again before its claim is back would run a second time.
            self.log.warning("[celery] republish_grace (%.1f s) is under twice try_lease_renew_interval "
                             "(%.1f s): a try still running when Redis came back empty may run twice",
                             self._loss_watch.grace, renew)

    def end(self, synchronous: bool = False) -> None:
        """Stop sending; with ``synchronous`` wait until every tracked task has an outcome."""
        if synchronous:
            while self.tasks:
                self.sync()
                if self.tasks:
                    time.sleep(END_POLL_INTERVAL)

    def new_external_id(self, ti: "TaskInstance") -> str | None:
        """Celery lets the sender choose the task id: the try's name is known before it is sent."""
        return str(uuid.uuid4())

    def terminate(self) -> None:
        """Leave running tasks to their workers, as Airflow does.

        The workers own them; the scheduler that comes next adopts them by their
        external id and records their real outcome instead of killing finished work.
        """

    # -- sending ---------------------------------------------------------------------------
    def _process_tasks(self, task_tuples: list[tuple[TaskInstanceKey, CommandType, str | None, Any]]) -> None:
        """Publish the commands the base ``trigger_tasks`` picked, highest priority first.

        A command stays queued until its message is out (the publish is retried on later
        heartbeats), so this does the ``queued_tasks``/``running`` bookkeeping itself.
        """
        broker_error: Exception | None = None
        for key, command, queue, _executor_config in task_tuples:
            if broker_error is None:
                broker_error = self._send(key, command, queue)
            else:
                # The broker just failed for an earlier task of this heartbeat: count the
                # try for the rest without waiting out another timeout each.
                self._publish_failed(key, broker_error)

    def _send(self, key: TaskInstanceKey, command: CommandType, queue: str | None) -> Exception | None:
        """Publish one command; the broker error if that failed (the task stays queued)."""
        if self.refuse_command(key, command):
            del self.queued_tasks[key]
            self._forget(key)
            return None
        task_id = self._assigned_ids.get(key)
        if task_id is None:
            # The scheduler names each try before it is sent (and records the name first),
            # so a scheduler that takes over adopts a try sent just before a crash by it.
            preassigned = getattr(self.queued_tasks[key][3], "external_executor_id", None)
            task_id = self._assigned_ids[key] = preassigned or str(uuid.uuid4())
            # Before publishing: the scheduler records the id as external_executor_id.
            self.report_event(key, TaskEvent(TaskInstanceState.QUEUED, external_id=task_id))
        queue = queue or self.default_queue
        try:
            self._publish(task_id, command, queue)
        except _NOT_RETRYABLE as exc:
            del self.queued_tasks[key]
            self._forget(key)
            self.fail(key, f"could not publish to the broker: {exc}")
            return None
        except Exception as exc:  # noqa: BLE001 - any broker/connection error is retried
            self._publish_failed(key, exc)
            return exc
        del self.queued_tasks[key]
        self.task_publish_retries.pop(key, None)
        self.running.add(key)
        self.tasks[key] = task_id
        self._loss_watch.record(key, task_id, command, queue)
        self._outage.ok("broker")
        return None

    def _publish(self, task_id: str, command: CommandType, queue: str) -> None:
        """One message for one try, under the try's own id (signed when a key is set)."""
        try:
            self.app.tasks[EXECUTE_COMMAND_TASK].apply_async(
                args=[list(command)], kwargs=signature_kwargs(task_id, command), queue=queue,
                task_id=task_id, retry=False, timeout=self.operation_timeout)
        except Exception:
            self.publish_failures += 1
            raise

    def _publish_failed(self, key: TaskInstanceKey, exc: Exception) -> None:
        tries = self.task_publish_retries.get(key, 0) + 1
        self.task_publish_retries[key] = tries
        self._outage.failed("broker", _one_line(exc))
        if tries <= self.task_publish_max_retries:
            self.log.debug("could not publish task %s (try %d of %d), will retry on the next heartbeat: %s",
                           key, tries, self.task_publish_max_retries + 1, _one_line(exc))
            return
        self.log.error("giving up publishing task %s after %d tries: %s", key, tries, _one_line(exc))
        self.queued_tasks.pop(key, None)
        self._forget(key)
        self.fail(key, f"could not publish to the broker after {tries} tries: {_one_line(exc)}")

    def execute_async(self, key: TaskInstanceKey, command: CommandType, queue: str | None = None,
                      executor_config: Any | None = None) -> None:
        """Publish one command now (the scheduler's path is :meth:`trigger_tasks`)."""
        self.queued_tasks.setdefault(key, (command, 1, queue, None))  # type: ignore[arg-type]
        error = self._send(key, command, queue)
        if error is not None:
            raise error

    # -- learning outcomes -----------------------------------------------------------------
    def sync(self) -> None:
        """Fetch every tracked task's state in one backend round trip and report changes."""
        if not self.tasks:
            return
        try:
            found = fetch_states(self.app.backend, self.tasks.values())
        except Exception as exc:  # noqa: BLE001 - a backend outage must not crash the scheduler
            self._outage.failed("result backend", _one_line(exc))
            return
        self._outage.ok("result backend")
        started: dict[TaskInstanceKey, str] = {}
        leased: dict[TaskInstanceKey, tuple[str, dict]] = {}
        unclaimed: set[TaskInstanceKey] = set()
        for key, task_id in list(self.tasks.items()):
            task_state = found.get(task_id) or TaskState(states.PENDING)
            self.update_task_state(key, task_state)
            if task_state.state == states.STARTED and isinstance(task_state.meta, dict):
                started[key] = task_state.meta.get("hostname")
                leased[key] = (task_id, task_state.meta)
            elif task_state.state == states.PENDING:
                unclaimed.add(key)
        self._check_lost_workers(started)
        self._check_leases(leased)
        self._publish_lost_tries(unclaimed)

    def _check_leases(self, leased: dict[TaskInstanceKey, tuple[str, dict]]) -> None:
        """Report tries whose worker stopped renewing their lease as lost, not failed."""
        expired = set(self._leases.expired({task_id: meta for task_id, meta in leased.values()}))
        for key, (task_id, meta) in leased.items():
            if task_id not in expired or key not in self.tasks:
                continue
            where = f"{meta.get('hostname')} (pid {meta.get('pid')})"
            reason = (f"worker {where} stopped renewing the lease of this try (celery task id {task_id}) for "
                      f"{self._leases.timeout:.0f} s: the worker is gone; the try runs again, not charged to the "
                      f"task's retries")
            try:
                # Only over the dead worker's own claim: an outcome that just arrived stands.
                decided = replace_own_claim(self.app.backend, task_id, claim=meta.get("claim") or "",
                                            state=states.FAILURE, meta=TaskLostError(reason))
            except Exception as exc:  # noqa: BLE001 - decide once the backend answers again
                self._outage.failed("result backend", _one_line(exc))
                continue
            if not decided:
                continue
            self.log.warning("%s: %s", key, reason)
            self.tasks.pop(key, None)
            self._forget(key)
            self._lost(key, reason)

    def _publish_lost_tries(self, unclaimed: set[TaskInstanceKey]) -> None:
        """Publish again the tries a Redis broker lost (see ``celery_republish``)."""
        for service, error in self._loss_watch.check(self.app):
            if error is None:
                self._outage.ok(service)
            else:
                self._outage.failed(service, _one_line(error))
        again = []
        for key, sent in self._loss_watch.due(unclaimed):
            try:
                self._publish(sent.task_id, sent.command, sent.queue)
            except Exception as exc:  # noqa: BLE001 - the broker is down again: next sync
                self._outage.failed("broker", _one_line(exc))
                self._loss_watch.publish_failed(key)
                continue
            again.append(f"{key} (celery task {sent.task_id})")
        if again:
            self.log.info("published again %d tries the broker lost: %s", len(again), ", ".join(again))

    def _check_lost_workers(self, started: dict[TaskInstanceKey, str | None]) -> None:
        """Fail tasks whose worker stopped answering, so none waits on a redelivery forever.

        With acks_late a killed worker's message comes back, but on Redis only after the
        visibility timeout (a day by default). A worker that misses two pings in a row
        is taken as gone: its tasks are marked failed in the result backend first (so a
        later redelivery finds them finished and does not run them) and then reported.
        """
        if self.worker_lost_check_interval <= 0 or not started:
            self._missed_pings.clear()
            return
        now = time.monotonic()
        if now - self._last_worker_check < self.worker_lost_check_interval:
            return
        self._last_worker_check = now
        try:
            replies = self.app.control.ping(timeout=self.operation_timeout) or []
        except Exception as exc:  # noqa: BLE001 - no broadcast support: cannot tell
            self.log.debug("cannot ping workers: %s", _one_line(exc))
            return
        alive = {name for reply in replies for name in reply}
        hosts = {host for host in started.values() if host}
        self._missed_pings = {host: self._missed_pings.get(host, 0) + 1 for host in hosts if host not in alive}
        for key, host in started.items():
            if host and self._missed_pings.get(host, 0) >= LOST_WORKER_MISSED_PINGS:
                task_id = self.tasks.pop(key, None)
                reason = (f"worker {host} stopped answering while running this try (celery task id {task_id}); "
                          f"the try is run again, not charged to the task's retries")
                if task_id:
                    try:
                        self.app.backend.mark_as_failure(task_id, TaskLostError(reason))
                    except Exception as exc:  # noqa: BLE001
                        self._outage.failed("result backend", _one_line(exc))
                self._forget(key)
                self._lost(key, reason)

    def _lost(self, key: TaskInstanceKey, reason: str) -> None:
        """Report a try lost with its worker: failed, and not to be charged to the task's retries."""
        self.report_event(key, TaskEvent(TaskInstanceState.FAILED, reason=reason, infrastructure_loss=True))

    def update_task_state(self, key: TaskInstanceKey, task_state: TaskState) -> None:
        """Map one Celery state to an event: SUCCESS/FAILURE/REVOKED end it, STARTED is running."""
        state = task_state.state
        if state == states.SUCCESS:
            self._forget(key)
            self.tasks.pop(key, None)
            # The result names the worker too: a try that started and ended between two
            # syncs was never seen STARTED, and the scheduler still records where it ran.
            meta = task_state.meta if isinstance(task_state.meta, dict) else {}
            values = meta.get("xcom")
            self.report_event(key, TaskEvent(TaskInstanceState.SUCCESS, hostname=meta.get("hostname"),
                                             pid=meta.get("pid"), result=values if isinstance(values, dict) else None))
        elif state in (states.FAILURE, states.REVOKED):
            self._forget(key)
            self.tasks.pop(key, None)
            self.report_event(key, TaskEvent(TaskInstanceState.FAILED, reason=task_state.reason,
                                             infrastructure_loss=task_state.infrastructure_loss))
        elif state == states.STARTED:
            pending = self.event_buffer.event(key)
            if pending is not None and pending.state == TaskInstanceState.QUEUED:
                # The QUEUED event carries the external id; report running once it was read.
                return
            if key not in self._reported_running:
                self._reported_running.add(key)
                meta = task_state.meta if isinstance(task_state.meta, dict) else {}
                self.report_event(key, TaskEvent(TaskInstanceState.RUNNING, hostname=meta.get("hostname"),
                                                 pid=meta.get("pid")))
        # PENDING, RECEIVED, RETRY: nothing new to report.

    def _forget(self, key: TaskInstanceKey) -> None:
        self._loss_watch.forget(key)
        self._assigned_ids.pop(key, None)
        self.task_publish_retries.pop(key, None)
        self._reported_running.discard(key)

    # -- recovery and control ----------------------------------------------------------------
    def try_adopt_task_instances(self, tis: Sequence["TaskInstance"]) -> Sequence["TaskInstance"]:
        """Track the tasks of a dead scheduler by their Celery id; return those without one."""
        not_adopted = []
        adopted = []
        for ti in tis:
            if ti.external_executor_id:
                self.tasks[ti.key] = ti.external_executor_id
                self.running.add(ti.key)
                adopted.append(f"{ti.key} (celery task {ti.external_executor_id})")
                self._resend_adopted(ti)
            else:
                not_adopted.append(ti)
        if adopted:
            self.log.info("adopted %d task instances: %s", len(adopted), ", ".join(adopted))
        return not_adopted

    def _resend_adopted(self, ti: "TaskInstance") -> None:
        """Publish an adopted queued try again under its own id; remember it for broker losses.

        The scheduler records a try's id before sending it, so a scheduler that died in
        between leaves a try that no worker will ever receive. Publishing it again under
        the same id is safe: a worker runs an id only once (the claim), so if the first
        message was out after all, one of the two runs and the other finds the claim.
        """
        fileloc = getattr(ti, "dag_fileloc", None)
        if not fileloc:
            return
        command = task_command_of(ti)
        queue = ti.queue or self.default_queue
        self._loss_watch.record(ti.key, ti.external_executor_id, command, queue)
        if ti.state != "queued":
            return
        try:
            self._publish(ti.external_executor_id, command, queue)
        except Exception as exc:  # noqa: BLE001 - a broker outage: the stuck-queued timeout still applies
            self._outage.failed("broker", _one_line(exc))

    def revoke_task(self, *, ti: "TaskInstance") -> None:
        """Stop the task instance's Celery task (killing it if running) and forget it."""
        key = ti.key
        task_id = self.tasks.get(key) or self._assigned_ids.get(key) or ti.external_executor_id
        if task_id:
            self._revoke(task_id, terminate=True)
        self.queued_tasks.pop(key, None)
        self.running.discard(key)
        self.tasks.pop(key, None)
        self._forget(key)

    def cleanup_stuck_queued_tasks(self, tis: list["TaskInstance"]) -> list[str]:
        """Revoke tasks that stayed queued too long; the scheduler decides what follows."""
        lines = []
        for ti in tis:
            task_id = self.tasks.get(ti.key) or self._assigned_ids.get(ti.key) or ti.external_executor_id
            self.revoke_task(ti=ti)
            lines.append(f"{ti.key} (celery task {task_id or 'never sent'}) was stuck in queued and was revoked")
        return lines

    def _revoke(self, task_id: str, *, terminate: bool) -> None:
        # Claim the id as REVOKED first: if no worker started it yet, none ever will,
        # even if the revoke broadcast below is missed by a worker that is down now.
        try:
            claim_task(self.app.backend, task_id, state=states.REVOKED,
                       meta=TaskRevokedError("revoked by the scheduler before a worker started it"))
        except Exception as exc:  # noqa: BLE001
            self.log.warning("could not mark celery task %s revoked in the result backend: %s",
                             task_id, _one_line(exc))
        try:
            self.app.control.revoke(task_id, terminate=terminate)
        except Exception as exc:  # noqa: BLE001
            self.log.warning("could not broadcast revoke of celery task %s: %s", task_id, _one_line(exc))

    def get_task_log(self, ti: "TaskInstance", try_number: int) -> tuple[list[str], list[str]]:
        """Read the try's log from the shared log folder the workers write to."""
        from crossdock.runner.task_log import task_log_path_for_key

        path = task_log_path_for_key(ti.key.with_try_number(try_number))
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return [f"no log file at {path} (is the log folder shared with the workers?)"], []
        return [f"read from {path}"], text.splitlines()

    @staticmethod
    def get_cli_commands() -> list:
        from crossdock.executors.celery_cli import CELERY_COMMANDS

        return [CELERY_COMMANDS]

    def debug_dump(self) -> None:
        super().debug_dump()
        for key, task_id in self.tasks.items():
            self.log.info("  celery task %s: %s", task_id, key)
        for key, tries in self.task_publish_retries.items():
            self.log.info("  publish failed %d times: %s", tries, key)


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _redact(url: Any) -> str:
    """A URL without its password, for logs (the same masking as ``config list``)."""
    from crossdock.config_secrets import redact_url

    return redact_url(str(url))
