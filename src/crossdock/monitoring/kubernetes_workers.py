"""The *kubernetes* worker pool: one Deployment per queue, scaled through its ``scale`` subresource.

``crossdock celery autoscaler`` decides how many workers a queue should have; this pool
gets there by setting ``spec.replicas`` of the queue's Deployment (see
:mod:`.worker_deployments` for its name). Going up is one write. Going down is drain-first,
in two steps, because a Deployment cannot be told *which* pod to remove:

1. :meth:`scale_down` picks the pods to retire — pods that run nothing first (not started
   yet), then idle workers, then the least busy — sends Celery ``cancel_consumer`` for the
   queue to them, and marks them ``crossdock.io/draining-since``. ``spec.replicas`` stays;
   :meth:`actual_workers` no longer counts them.
2. :meth:`tick` asks the draining workers what they run (Celery inspect). A pod whose worker
   is idle is *released*: it gets ``controller.kubernetes.io/pod-deletion-cost`` at the lowest
   value and ``spec.replicas`` is lowered by one for it, so the ReplicaSet removes it. Its
   worker gets SIGTERM with nothing to do and exits (Celery's warm shutdown).
   A worker still busy after ``[worker_queues] drain_grace`` is reported once and left alone:
   its tasks keep running and it is released when they end — never killed by a scale-down.

The marks are pod annotations, so an autoscaler that restarts picks up the drains in flight.

What Kubernetes guarantees and what it does not:

* The ReplicaSet controller honours ``pod-deletion-cost`` on a best-effort basis only
  (beta and on by default from Kubernetes 1.22; off on older clusters). It removes pods
  that are unscheduled, pending or not ready *before* it looks at the cost, so such a pod
  may go instead of the released one. A released pod still there and not terminating after
  ``release_timeout`` seconds therefore gets its consumer back and its marks removed
  (the ReplicaSet already removed another pod, so the count is right).
* A terminating pod gets SIGTERM, then SIGKILL after ``terminationGracePeriodSeconds``;
  the Deployments ``crossdock deploy workers`` writes set it to ``drain_grace``. Only
  idle workers are released, so this matters only for deletions that are not ours:
  a rolling update, a node drain, an eviction, ``kubectl delete pod``, or KEDA/an HPA.
* Nothing stops another writer (``kubectl scale``, an HPA) from changing ``spec.replicas``:
  replicas are written with the ``resourceVersion`` that was read, so a change made
  meanwhile makes this write fail (409) and the next decision starts from the new number.
  Do not point an HPA or KEDA at a Deployment this pool scales.

A queue whose Deployment does not exist has no workers (:meth:`actual_workers` is 0);
scaling it raises :class:`DeploymentNotFound`, and a Deployment that may not be read or
written raises :class:`WorkerPoolError` — each with a message saying what to do, which
the autoscaler records as that queue's decision before it goes on with the others.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

from kubernetes import client

from crossdock.exceptions import UserFacingError
from crossdock.monitoring.queue_status import QueueStatus, WorkerInfo
from crossdock.monitoring.worker_deployments import (
    CELERY_HOSTNAME_PREFIX, deployment_name, pod_name_of, selector_labels, worker_namespace)

log = logging.getLogger("crossdock.monitoring.autoscaler")

DRAINING_ANNOTATION = "crossdock.io/draining-since"
RELEASED_ANNOTATION = "crossdock.io/released-at"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
#: The lowest pod-deletion-cost (an int32): a released pod is the ReplicaSet's first choice.
RELEASED_DELETION_COST = -2147483648
#: Seconds each API call may take.
API_TIMEOUT = 10.0
#: Seconds Celery control and inspect broadcasts wait for replies.
CONTROL_TIMEOUT = 1.0
#: Seconds a released pod may stay before it is taken back (the ReplicaSet removed another).
RELEASE_TIMEOUT = 120.0


class WorkerPoolError(UserFacingError):
    """A queue's Deployment cannot be read or scaled; the message says which and why."""


class DeploymentNotFound(WorkerPoolError):
    """The queue has no Deployment (yet): it has no workers, and cannot get any."""


def _annotations(pod: Any) -> dict[str, str]:
    return dict(pod.metadata.annotations or {})


def _since(pod: Any, key: str) -> float | None:
    try:
        return float(_annotations(pod)[key])
    except (KeyError, ValueError):
        return None


def _terminating(pod: Any) -> bool:
    return pod.metadata.deletion_timestamp is not None


def _running(pod: Any) -> bool:
    return bool(pod.status and pod.status.phase == "Running")


class KubernetesWorkerPool:
    """Scales ``[worker_queues]`` Deployments; see the module docstring for how it drains.

    :param api_client: the official client's ``ApiClient``; default
        :func:`crossdock.kubernetes.kube_client.get_kube_client`.
    :param celery_app: the Celery app whose workers consume the queues; default crossdock's.
    :param namespace: where the Deployments are; default ``[worker_queues] namespace`` (or
        ``[kubernetes_executor] namespace`` when that is empty).
    :param queues: queues :meth:`tick` looks after even before a decision names them
        (drains in flight when the autoscaler restarted); default the configured ones.
    :param drain_grace: seconds after which a worker still busy draining is reported;
        default ``[worker_queues] drain_grace``.
    :param release_timeout: seconds after which a released pod that is still there is taken back.
    :param clock: ``time.time`` or a stand-in; the draining marks hold its values.
    """

    driver = "kubernetes"

    def __init__(self, *, api_client: Any = None, celery_app: Any = None, namespace: str | None = None,
                 queues: Iterable[str] | None = None, drain_grace: float | None = None,
                 release_timeout: float = RELEASE_TIMEOUT, clock: Callable[[], float] = time.time) -> None:
        from crossdock.configuration import conf
        from crossdock.monitoring.worker_queues import WorkerQueues

        if api_client is None:
            from crossdock.kubernetes.kube_client import get_kube_client

            api_client = get_kube_client()
        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace or worker_namespace()
        self.queues = set(WorkerQueues.from_config().names() if queues is None else queues)
        self.drain_grace = conf.getfloat("worker_queues", "drain_grace") if drain_grace is None else drain_grace
        self.release_timeout = release_timeout
        self.clock = clock
        self._celery_app = celery_app
        self._reported: set[str] = set()
        self._tick_errors: dict[str, str] = {}

    # -- the WorkerPool contract --------------------------------------------------------------
    def actual_workers(self, queue: str) -> int:
        """Replicas less the draining pods; 0 for a queue with no Deployment (scaling it up says why)."""
        try:
            scale, pods = self._read(queue)
        except DeploymentNotFound:
            return 0
        return max(0, (scale.spec.replicas or 0) - len(self._draining(pods)))

    def draining_workers(self, queue: str) -> list[str]:
        """Pod names of the queue's workers that stopped consuming and still finish their work."""
        try:
            _, pods = self._read(queue)
        except DeploymentNotFound:
            return []
        return sorted(pod.metadata.name for pod in self._draining(pods))

    def scale_up(self, queue: str, count: int, status: QueueStatus) -> None:
        """Take draining workers back first (they are warm), then add replicas for the rest."""
        scale, pods = self._read(queue)
        taken_back = self._draining(pods)[:count]
        for pod in taken_back:
            self._restore(queue, pod, why="needed again")
        more = count - len(taken_back)
        if more > 0:
            self._write_replicas(queue, scale, (scale.spec.replicas or 0) + more)

    def scale_down(self, queue: str, count: int, status: QueueStatus) -> list[str]:
        """Retire ``count`` workers, the ones with least to lose first; returns what was retired.

        Replicas the ReplicaSet has not made a pod for yet go first, at once: there is nothing
        to drain (they are named "N replica(s) without a pod"). The others are pods, drained
        as the module docstring says, and named by their pod names.
        """
        scale, pods = self._read(queue)
        replicas = scale.spec.replicas or 0
        live = [pod for pod in pods if not _terminating(pod) and RELEASED_ANNOTATION not in _annotations(pod)]
        podless = min(count, max(0, replicas - len(live)))
        if podless:
            self._write_replicas(queue, scale, replicas - podless)
            log.info("queue %s: %d replica(s) without a pod removed; replicas now %d", queue, podless,
                     scale.spec.replicas)
        workers = {pod_name_of(w.hostname): w for w in status.worker_hosts}
        candidates = [pod for pod in live if DRAINING_ANNOTATION not in _annotations(pod)]
        chosen = sorted(candidates, key=lambda pod: self._retire_rank(pod, workers.get(pod.metadata.name)))
        chosen = chosen[:count - podless]
        retired = [f"{podless} replica(s) without a pod"] if podless else []
        if not chosen:
            return retired
        self._cancel_consumer(queue, [pod for pod in chosen if _running(pod)])
        now = self.clock()
        for pod in chosen:
            self._annotate(pod, {DRAINING_ANNOTATION: f"{now:.3f}"})
        names = [pod.metadata.name for pod in chosen]
        log.info("queue %s: draining %s (they stop consuming, finish what they run, then exit)",
                 queue, ", ".join(names))
        return retired + names

    def tick(self) -> None:
        """Release drained workers, report those past ``drain_grace``, take back stray releases."""
        for queue in sorted(self.queues):
            try:
                self._tick_queue(queue)
            except WorkerPoolError as exc:
                if self._tick_errors.get(queue) != str(exc):  # once per error, not every tick
                    log.warning("queue %s: %s", queue, exc)
                self._tick_errors[queue] = str(exc)
            else:
                self._tick_errors.pop(queue, None)

    def close(self) -> None:
        """The workers stay: they belong to their Deployments. Only the API connection closes."""
        self.api_client.close()

    # -- reading ------------------------------------------------------------------------------
    def _read(self, queue: str) -> tuple[Any, list[Any]]:
        """The queue's Deployment scale and its pods (one read each)."""
        self.queues.add(queue)
        name = deployment_name(queue)
        where = f"Deployment {self.namespace}/{name} of queue {queue!r}"
        try:
            scale = self.apps.read_namespaced_deployment_scale(name, self.namespace, _request_timeout=API_TIMEOUT)
            selector = (scale.status.selector if scale.status else None) or ",".join(
                f"{key}={value}" for key, value in selector_labels(queue).items())
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector,
                                                 _request_timeout=API_TIMEOUT).items
        except client.ApiException as exc:
            raise self._api_error(where, exc) from None
        return scale, sorted(pods, key=lambda pod: pod.metadata.name)

    @staticmethod
    def _api_error(where: str, exc: client.ApiException) -> WorkerPoolError:
        if exc.status == 404:
            return DeploymentNotFound(f"{where} not found: create it with 'crossdock deploy workers -o yaml "
                                   f"| kubectl apply -f -' (or fix [worker_queues] deployment_name / namespace)")
        if exc.status in (401, 403):
            return WorkerPoolError(f"{where}: not allowed ({exc.status} {exc.reason}); the autoscaler's "
                                   f"service account needs get/update on deployments/scale and list/patch on "
                                   f"pods there (deploy/autoscaler)")
        if exc.status == 409:
            return WorkerPoolError(f"{where} changed while it was being scaled; the next decision reads it again")
        return WorkerPoolError(f"{where}: the Kubernetes API answered {exc.status} {exc.reason}")

    @staticmethod
    def _draining(pods: list[Any]) -> list[Any]:
        """Pods that stopped consuming and are not yet released (they still count in replicas)."""
        return [pod for pod in pods if not _terminating(pod) and DRAINING_ANNOTATION in _annotations(pod)
                and RELEASED_ANNOTATION not in _annotations(pod)]

    @staticmethod
    def _retire_rank(pod: Any, worker: WorkerInfo | None) -> tuple:
        """Sort key: a pod that runs nothing yet, an idle worker, one that did not answer, the least busy."""
        newest_first = -(pod.metadata.creation_timestamp.timestamp() if pod.metadata.creation_timestamp else 0)
        if not _running(pod):
            return (0, 0, newest_first, pod.metadata.name)
        if worker is None:
            return (2, 0, newest_first, pod.metadata.name)
        load = worker.active + worker.reserved
        return (1 if load == 0 else 3, load, newest_first, pod.metadata.name)

    # -- writing ------------------------------------------------------------------------------
    def _write_replicas(self, queue: str, scale: Any, replicas: int) -> None:
        """Write ``spec.replicas`` with the resourceVersion read, so a concurrent change is not overwritten."""
        name = scale.metadata.name
        body = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": name, "namespace": self.namespace,
                             "resourceVersion": scale.metadata.resource_version},
                "spec": {"replicas": max(0, replicas)}}
        try:
            self.apps.replace_namespaced_deployment_scale(name, self.namespace, body, _request_timeout=API_TIMEOUT)
        except client.ApiException as exc:
            raise self._api_error(f"Deployment {self.namespace}/{name} of queue {queue!r}", exc) from None
        scale.spec.replicas = max(0, replicas)

    def _annotate(self, pod: Any, annotations: dict[str, str | None]) -> None:
        """Merge ``annotations`` into the pod's (None removes one); a pod already gone is skipped."""
        try:
            self.core.patch_namespaced_pod(pod.metadata.name, self.namespace,
                                           {"metadata": {"annotations": annotations}}, _request_timeout=API_TIMEOUT)
        except client.ApiException as exc:
            if exc.status != 404:
                raise self._api_error(f"pod {self.namespace}/{pod.metadata.name}", exc) from None

    def _restore(self, queue: str, pod: Any, *, why: str) -> None:
        """Put a marked pod back to work: its consumer back, its marks gone."""
        if _running(pod):
            self._control().add_consumer(queue, destination=[CELERY_HOSTNAME_PREFIX + pod.metadata.name],
                                         reply=False)
        self._annotate(pod, {DRAINING_ANNOTATION: None, RELEASED_ANNOTATION: None, DELETION_COST_ANNOTATION: None})
        self._reported.discard(pod.metadata.name)
        log.info("queue %s: pod %s consumes again (%s)", queue, pod.metadata.name, why)

    # -- Celery -------------------------------------------------------------------------------
    def _control(self) -> Any:
        if self._celery_app is None:
            from crossdock.executors.celery_app import get_celery_app

            self._celery_app = get_celery_app()
        return self._celery_app.control

    def _cancel_consumer(self, queue: str, pods: list[Any]) -> None:
        """Ask the pods' workers to stop consuming ``queue`` (sent again each tick: a no-op when done)."""
        if pods:
            hosts = [CELERY_HOSTNAME_PREFIX + pod.metadata.name for pod in pods]
            self._control().cancel_consumer(queue, destination=hosts, reply=False)

    def _tasks_held(self, pods: list[Any]) -> dict[str, int]:
        """Pod name → tasks its worker runs or holds; a worker that did not answer is missing."""
        hosts = [CELERY_HOSTNAME_PREFIX + pod.metadata.name for pod in pods]
        inspect = self._control().inspect(destination=hosts, timeout=CONTROL_TIMEOUT)
        active, reserved = inspect.active() or {}, inspect.reserved() or {}
        return {pod_name_of(host): len(active.get(host) or ()) + len(reserved.get(host) or ())
                for host in set(active) | set(reserved)}

    # -- the drain, one queue -----------------------------------------------------------------
    def _tick_queue(self, queue: str) -> None:
        scale, pods = self._read(queue)
        now = self.clock()
        for pod in pods:
            released_at = _since(pod, RELEASED_ANNOTATION)
            if released_at is not None and not _terminating(pod) and now - released_at > self.release_timeout:
                self._restore(queue, pod, why=f"released {now - released_at:.0f} s ago and still there: the "
                                              f"ReplicaSet removed another pod")
        draining = self._draining(pods)
        if not draining:
            return
        running = [pod for pod in draining if _running(pod)]
        self._cancel_consumer(queue, running)
        held = self._tasks_held(running) if running else {}
        idle = [pod for pod in draining if not _running(pod) or held.get(pod.metadata.name) == 0]
        for pod in draining:
            if pod in idle:
                continue
            since = _since(pod, DRAINING_ANNOTATION) or now
            if now - since > self.drain_grace and pod.metadata.name not in self._reported:
                self._reported.add(pod.metadata.name)
                tasks = held.get(pod.metadata.name)
                what = f"still runs {tasks} task(s)" if tasks is not None else "does not answer"
                log.warning("queue %s: draining worker %s %s after drain_grace (%.0f s); its tasks are left "
                            "running and it exits when they finish", queue, pod.metadata.name, what,
                            self.drain_grace)
        if idle:
            self._release(queue, scale, idle, now)

    def _release(self, queue: str, scale: Any, pods: list[Any], now: float) -> None:
        """Lowest deletion cost first, then fewer replicas, then the mark: a failed step is retried next tick."""
        for pod in pods:
            self._annotate(pod, {DELETION_COST_ANNOTATION: str(RELEASED_DELETION_COST)})
        self._write_replicas(queue, scale, (scale.spec.replicas or 0) - len(pods))
        for pod in pods:
            self._annotate(pod, {RELEASED_ANNOTATION: f"{now:.3f}"})
            self._reported.discard(pod.metadata.name)
        log.info("queue %s: released %s (idle after draining); replicas now %d", queue,
                 ", ".join(pod.metadata.name for pod in pods), scale.spec.replicas)
