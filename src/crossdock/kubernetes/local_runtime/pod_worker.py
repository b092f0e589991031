"""One pod's life on this node: start its process, supervise it, report every phase to the API.

The node agent starts a :class:`PodWorker` thread per pod bound to it. A pod that cannot
be run here (a bad quantity, an unsupported field, a missing secret, anything the launch
plan cannot be built from) ends **Failed** with ``CreateContainerConfigError`` and a
message, never left Pending: a kubelet that cannot create a container says why.
"""

from __future__ import annotations

import calendar
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from kubernetes.client.rest import ApiException

from crossdock.exceptions import CrossdockError
from crossdock.kubernetes.local_runtime.container import Container, write_json
from crossdock.kubernetes.local_runtime.launch import (
    ContainerConfigError, ImagePullError, build_plan, pick_container,
)
from crossdock.kubernetes.local_runtime.private_files import private_dir
from crossdock.kubernetes.local_runtime.store import now_rfc3339
from crossdock.kubernetes.local_runtime.volumes import attach as attach_volumes

if TYPE_CHECKING:
    from crossdock.kubernetes.local_runtime.node_agent import NodeAgent

log = logging.getLogger(__name__)

NODE_IP = "127.0.0.1"
#: Back-off before restarting a crashed container (restartPolicy Always/OnFailure), doubling.
CRASH_BACKOFF_SECONDS = 10.0
CRASH_BACKOFF_MAX_SECONDS = 300.0
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
TERMINAL_PHASES = ("Succeeded", "Failed")
#: How often a worker wakes while its process runs, to notice deadline and deletion.
WORKER_TICK_SECONDS = 0.5


class AgentStopped(CrossdockError):
    """The agent is stopping: a worker leaves its pod as it is (its process runs on)."""


class PodWorker(threading.Thread):
    """Runs one pod to its end on this node and keeps the API server told."""

    def __init__(self, agent: NodeAgent, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}-{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid = meta["uid"]
        self.namespace, self.pod_name = meta["namespace"], meta["name"]
        self.spec_container = pick_container(pod)
        self.container = Container(agent.pods_dir / self.uid, container_name=self.spec_container["name"],
                                   pool=agent.shims)
        self.waiting_reason = "ContainerCreating"
        self._wake = threading.Event()
        self._deleted = False
        self.restart_count = 0
        self.start_time: str | None = (pod.get("status") or {}).get("startTime")

    # -- events from the agent ----------------------------------------------------------------
    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self._wake.set()

    def pod_deleted(self) -> None:
        self._deleted = True
        self._wake.set()

    @property
    def deletion_requested(self) -> bool:
        return self._deleted or bool(self.pod["metadata"].get("deletionTimestamp"))

    # -- status reporting ---------------------------------------------------------------------
    def _patch_status(self, status: dict[str, Any]) -> bool:
        """Send a status patch; False when the pod is gone (nothing left to report to)."""
        if self._deleted:
            return False
        try:
            self.agent._call(self.agent.core.patch_namespaced_pod_status, self.pod_name, self.namespace,
                             {"metadata": {"uid": self.uid}, "status": status})
            return True
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise

    def _base_status(self, phase: str, *, ready: bool) -> dict[str, Any]:
        now = now_rfc3339()
        flag = "True" if ready else "False"
        return {
            "phase": phase, "hostIP": NODE_IP, "podIP": NODE_IP, "podIPs": [{"ip": NODE_IP}],
            "startTime": self.start_time,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": now},
                {"type": "Ready", "status": flag, "lastProbeTime": None, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastProbeTime": None, "lastTransitionTime": now},
            ],
        }

    def _container_status(self, state: dict[str, Any], *, ready: bool = False,
                          last_state: dict[str, Any] | None = None) -> dict[str, Any]:
        running = "running" in state
        return {
            "name": self.spec_container["name"], "state": state, "lastState": last_state or {},
            "ready": ready, "restartCount": self.restart_count, "image": self.spec_container.get("image", ""),
            "imageID": "", "containerID": f"crossdock://{self.uid}-{self.restart_count}", "started": running,
        }

    def _report_waiting(self, reason: str, message: str | None = None) -> None:
        self.waiting_reason = reason
        status = self._base_status("Pending", ready=False)
        waiting = {"reason": reason} | ({"message": message} if message else {})
        status["containerStatuses"] = [self._container_status({"waiting": waiting})]
        self._patch_status(status)

    def _report_running(self, started_at: str) -> None:
        status = self._base_status("Running", ready=True)
        status["containerStatuses"] = [self._container_status({"running": {"startedAt": started_at}}, ready=True)]
        self._patch_status(status)

    def _terminated_state(self, result: dict[str, Any]) -> dict[str, Any]:
        state = {"exitCode": int(result["exitCode"]), "reason": result["reason"],
                 "startedAt": result.get("startedAt"), "finishedAt": result.get("finishedAt") or now_rfc3339(),
                 "containerID": f"crossdock://{self.uid}-{self.restart_count}"}
        if result.get("message"):
            state["message"] = result["message"]
        if result.get("signal"):
            state["signal"] = result["signal"]
        return state

    def _report_terminal(self, result: dict[str, Any], *, phase: str | None = None, reason: str | None = None,
                         message: str | None = None) -> None:
        if phase is None:
            phase = "Succeeded" if int(result["exitCode"]) == 0 else "Failed"
        status = self._base_status(phase, ready=False)
        status["containerStatuses"] = [self._container_status({"terminated": self._terminated_state(result)})]
        if reason:
            status["reason"] = reason
            status["message"] = message or reason
        if self._patch_status(status) or self._deleted:
            self.container.mark_reported(status)

    def _report_config_error(self, message: str) -> None:
        """The process cannot ever start here; fail the pod rather than leave it Pending forever."""
        self.waiting_reason = ContainerConfigError.reason
        status = self._base_status("Failed", ready=False)
        status["reason"] = ContainerConfigError.reason
        status["message"] = message
        status["containerStatuses"] = [self._container_status(
            {"waiting": {"reason": ContainerConfigError.reason, "message": message}})]
        if self._patch_status(status):
            self.container.mark_reported(status)

    # -- the pod's life -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except AgentStopped:
            pass
        except Exception:  # noqa: BLE001 - one bad pod must not take the agent down
            log.exception("node agent: pod %s/%s failed unexpectedly", self.namespace, self.pod_name)
        finally:
            self.agent._worker_done(self)
            if self._deleted:
                self.container.remove()

    def _deadline_at(self) -> float | None:
        seconds = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if not seconds or not self.start_time:
            return None
        started = calendar.timegm(time.strptime(self.start_time, "%Y-%m-%dT%H:%M:%SZ"))
        return started + int(seconds)

    def _grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(grace)

    def _run(self) -> None:
        box = self.container
        private_dir(box.dir)
        write_json(box.dir / "meta.json", {"namespace": self.namespace, "name": self.pod_name, "uid": self.uid,
                                           "container": self.spec_container["name"], "node": self.agent.node_name})
        if box.reported() is not None:
            self._finish_reported()
            return
        adopting = box.plan_exists()  # we ran this pod before a restart: adopt its process or outcome
        if self.start_time is None:
            self.start_time = now_rfc3339()
        while True:
            if adopting:
                adopting = False
                started = box.started() or {}
                result = box.result()
                if result is None and not box.shim_alive():
                    result = box.wait(0)
                if result is None and started and (self.pod.get("status") or {}).get("phase") != "Running":
                    self._report_running(started["startedAt"])
                if not self._supervise(result):
                    return
                continue
            if self.deletion_requested:
                self._finish_deleted(None)
                return
            try:
                plan = build_plan(self.pod, self.spec_container, reject_patterns=self.agent.reject_images,
                                  read_source=self.agent.read_env_source, log_path=str(box.log_path))
                attach_volumes(plan, self.pod, self.spec_container, volumes_dir=str(box.dir / "volumes"))
            except ImagePullError as exc:
                self._report_waiting(ImagePullError.reason, str(exc))
                self._wait_pending_forever()
                return
            except ContainerConfigError as exc:
                self._report_config_error(str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - whatever the spec holds, the pod ends, not hangs
                log.warning("node agent: pod %s/%s cannot be run: %s", self.namespace, self.pod_name, exc)
                self._report_config_error(f"cannot build the container's process from the pod spec: "
                                          f"{type(exc).__name__}: {exc}")
                return
            box.start(plan)
            started = box.wait_started()
            if started is not None:
                self._report_running(started["startedAt"])
            if not self._supervise(None):
                return

    def _wait_pending_forever(self) -> None:
        """ErrImagePull: stay Pending until the pod is deleted or its deadline passes."""
        while not self.agent._stop.is_set():
            if self.deletion_requested:
                self._finish_deleted(None)
                return
            deadline = self._deadline_at()
            if deadline is not None and time.time() >= deadline:
                status = self._base_status("Failed", ready=False)
                status.update(reason="DeadlineExceeded", message=DEADLINE_MESSAGE)
                status["containerStatuses"] = [self._container_status({"waiting": {"reason": self.waiting_reason}})]
                self._patch_status(status)
                return
            self._wake.wait(WORKER_TICK_SECONDS)
            self._wake.clear()

    def _supervise(self, result: dict[str, Any] | None) -> bool:
        """Wait for the process to end and report it; True if the container should restart."""
        box = self.container
        deadline_hit = False
        while result is None:
            if self.agent._stop.is_set():
                raise AgentStopped()
            if self.deletion_requested:
                result = box.stop(self._grace())
                self._finish_deleted(result)
                return False
            deadline = self._deadline_at()
            if deadline is not None and time.time() >= deadline:
                deadline_hit = True
                result = box.stop(self._grace())
                break
            timeout = WORKER_TICK_SECONDS if deadline is None else max(0.0, min(WORKER_TICK_SECONDS,
                                                                                deadline - time.time()))
            result = box.wait(timeout)
            if result is None and self._wake.is_set():
                self._wake.clear()
        if result is None:
            result = box.wait(0) or box._lost()
        if deadline_hit:
            self._report_terminal(result, phase="Failed", reason="DeadlineExceeded", message=DEADLINE_MESSAGE)
            return False
        if self.deletion_requested:
            self._finish_deleted(result)
            return False
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        failed = int(result["exitCode"]) != 0
        if policy == "Always" or (policy == "OnFailure" and failed):
            return self._crash_loop(result)
        self._report_terminal(result)
        return False

    def _crash_loop(self, result: dict[str, Any]) -> bool:
        """Report the exit, back off, and ask for a restart, as a kubelet does."""
        backoff = min(CRASH_BACKOFF_SECONDS * (2 ** self.restart_count), CRASH_BACKOFF_MAX_SECONDS)
        last = {"terminated": self._terminated_state(result)}
        self.restart_count += 1
        self.waiting_reason = "CrashLoopBackOff"
        status = self._base_status("Running", ready=False)
        message = f"back-off {int(backoff)}s restarting failed container={self.spec_container['name']} pod={self.pod_name}"
        status["containerStatuses"] = [self._container_status(
            {"waiting": {"reason": "CrashLoopBackOff", "message": message}}, last_state=last)]
        self._patch_status(status)
        end = time.monotonic() + backoff
        while time.monotonic() < end:
            if self.agent._stop.is_set():
                raise AgentStopped()
            if self.deletion_requested:
                self._finish_deleted(None)
                return False
            self._wake.wait(min(WORKER_TICK_SECONDS, max(0.0, end - time.monotonic())))
            self._wake.clear()
        return True

    def _finish_reported(self) -> None:
        """The outcome reached the API before a restart; make sure it is still there."""
        status = self.container.reported() or {}
        if (self.pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            self._patch_status(status)
        if self.deletion_requested and not self._deleted:
            self._delete_now()

    def _finish_deleted(self, result: dict[str, Any] | None) -> None:
        """Graceful deletion: report how the process ended, then remove the pod for good."""
        if result is not None and not self._deleted:
            self._report_terminal(result)
        if not self._deleted:
            self._delete_now()

    def _delete_now(self) -> None:
        try:
            self.agent._call(self.agent.core.delete_namespaced_pod, self.pod_name, self.namespace,
                             body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}})
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
