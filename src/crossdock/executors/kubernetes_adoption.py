"""Taking over the pods of a dead scheduler, and clearing away the finished ones.

A mixin of :class:`~crossdock.executors.kubernetes_executor.KubernetesExecutor`. Pods
carry their scheduler job id in a label; a new scheduler lists the pods of each dead
job, relabels the ones its tries wait for to itself and follows them, and deletes
(when ``delete_worker_pods``) the finished ones that no try waits for. Its warm pods
that never got an assignment are deleted; assigned ones carry their try's key and are
adopted like any pod.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Sequence

import urllib3
from kubernetes.client.rest import ApiException

from crossdock.executors.kubernetes_pods import PodRecord
from crossdock.kubernetes.pod_generator import WORKER_LABEL, annotations_to_key, make_safe_label_value
from crossdock.kubernetes.warm_profile import assignment_of, is_warm

if TYPE_CHECKING:
    from kubernetes import client

    from crossdock.kubernetes.kube_config import KubeExecutorConfig
    from crossdock.models.taskinstance import TaskInstance
    from crossdock.models.taskinstancekey import TaskInstanceKey


class PodAdoption:
    """Adopts a dead scheduler's pods (see the module docstring)."""

    core: "client.CoreV1Api | None"
    settings: "KubeExecutorConfig"
    running: set["TaskInstanceKey"]
    _records: dict["TaskInstanceKey", PodRecord]
    _by_pod: dict[tuple[str, str], "TaskInstanceKey"]

    def _list_pods(self, selector: str) -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = []
        for namespace in self.watched_namespaces():
            if namespace is None:
                response = self.core.list_pod_for_all_namespaces(label_selector=selector, _preload_content=False)
            else:
                response = self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
            pods.extend(json.loads(response.data).get("items") or [])
        return pods

    def try_adopt_task_instances(self, tis: Sequence["TaskInstance"]) -> Sequence["TaskInstance"]:
        """Relabel the pods of dead scheduler jobs to this one and follow them; return the tries without a pod.

        The scheduler passes only tries whose scheduler job is gone, so a live sibling's
        pods are never touched. Finished pods of those dead jobs that no try waits for
        are deleted (when ``delete_worker_pods``).
        """
        self.start()
        by_job: dict[Any, list["TaskInstance"]] = {}
        for ti in tis:
            by_job.setdefault(ti.queued_by_job_id, []).append(ti)
        not_adopted: list["TaskInstance"] = []
        for job_id, group in by_job.items():
            if job_id is None:
                not_adopted.extend(group)
                continue
            try:
                pods = self._list_pods(self._selector(make_safe_label_value(job_id)))
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                self.log.warning("cannot list pods of scheduler job %s: %s", job_id, exc)
                not_adopted.extend(group)
                continue
            by_key = {}
            for pod in pods:
                if is_warm(pod) and assignment_of(pod) is None:
                    self._delete_unassigned_warm_pod(pod)
                    continue
                key = annotations_to_key((pod.get("metadata") or {}).get("annotations"))
                if key is not None:
                    by_key[key] = pod
            for ti in group:
                pod = by_key.pop(ti.key, None)
                if pod is None or not self._adopt_pod(ti, pod):
                    not_adopted.append(ti)
            for pod in by_key.values():
                self._clean_up_orphan_pod(pod)
        return not_adopted

    def _adopt_pod(self, ti: "TaskInstance", pod: dict[str, Any]) -> bool:
        meta = pod["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        try:
            self.core.patch_namespaced_pod(name, namespace, {"metadata": {"labels": {WORKER_LABEL: self.worker_label}}},
                                           _preload_content=False)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            self.log.warning("could not adopt pod %s/%s for %s: %s", namespace, name, ti.key, exc)
            return False
        record = PodRecord(key=ti.key, name=name, namespace=namespace, command=[], created=True, adopted=True,
                           executor_config=getattr(ti, "executor_config", None),
                           reported_running=(pod.get("status") or {}).get("phase") == "Running")
        self._records[ti.key] = record
        self._by_pod[(namespace, name)] = ti.key
        self.running.add(ti.key)
        self.log.info("adopted pod %s/%s running %s", namespace, name, ti.key)
        return True

    def _delete_unassigned_warm_pod(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        self.log.info("deleting unassigned warm pod %s/%s of a dead scheduler", meta.get("namespace"), meta.get("name"))
        self._delete_pod(meta["name"], meta["namespace"], grace_seconds=0)

    def _clean_up_orphan_pod(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Succeeded" or (phase == "Failed" and self.settings.delete_worker_pods_on_failure):
            if self.settings.delete_worker_pods:
                self.log.info("deleting finished pod %s/%s of a dead scheduler", meta.get("namespace"), meta.get("name"))
                self._delete_pod(meta["name"], meta["namespace"])
