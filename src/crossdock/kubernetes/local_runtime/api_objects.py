"""What a write does to the stored objects: the rules kube-apiserver's registry applies.

They are kept apart from the HTTP handling so that the answer to "what may a create,
update, delete or binding change" is read in one place, and so that a client sees the
same conflicts, defaults and refusals as from a v1.20 server whatever route it took.
"""

from __future__ import annotations

import copy
import random
from typing import Any, Callable

from crossdock.kubernetes.local_runtime import errors
from crossdock.kubernetes.local_runtime.errors import ApiError, bad_request, not_found
from crossdock.kubernetes.local_runtime.selector import GENERIC_FIELDS, POD_FIELDS
from crossdock.kubernetes.local_runtime.store import ObjectStore, now_rfc3339
from crossdock.kubernetes.local_runtime.validation import (
    DNS1123_LABEL, LABEL_MESSAGE, default_pod, prune_object, qos_class, validate_object_name, validate_pod,
    validate_pod_update,
)

GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATE_NAME_LENGTH = 5
DEFAULT_NAMESPACE = "default"

RESOURCES = {
    "pods": {"kind": "Pod", "namespaced": True, "fields": POD_FIELDS},
    "nodes": {"kind": "Node", "namespaced": False, "fields": GENERIC_FIELDS},
    "namespaces": {"kind": "Namespace", "namespaced": False, "fields": GENERIC_FIELDS},
}

#: Fields of a pod an update may change, as the real server's update validation allows.
_MUTABLE_META = ("labels", "annotations", "finalizers", "ownerReferences")

Change = Callable[[dict[str, Any]], Any]


class ObjectRules:
    """Creates, updates, binds and deletes objects in ``store`` as the real API server would."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def ensure_namespace(self, name: str) -> None:
        if not self.store.exists("namespaces", "", name):
            self.store.create("namespaces", {"metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]},
                                             "status": {"phase": "Active"}}, kind="Namespace")

    # -- pods ------------------------------------------------------------------------------
    def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("kind") not in (None, "Pod"):
            raise bad_request(f"the kind of the provided object ({body.get('kind')}) is not Pod")
        pod = prune_object("Pod", body)
        meta = pod.setdefault("metadata", {}) or {}
        pod["metadata"] = meta
        if meta.get("namespace") not in (None, "", namespace):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        meta["namespace"] = namespace
        for server_owned in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            meta.pop(server_owned, None)
        _name_from_prefix(meta)
        default_pod(pod)
        validate_pod(pod)
        if not self.store.exists("namespaces", "", namespace):
            raise not_found("namespaces", namespace)
        pod["status"] = {"phase": "Pending", "qosClass": qos_class(pod)}
        if pod["spec"].get("nodeName"):
            pod["status"]["conditions"] = [_condition("PodScheduled", "True")]
        return self.store.create("pods", pod, kind="Pod")

    def update_pod(self, namespace: str, name: str, change: Change, *,
                   status_only: bool, expect_rv: str | None = None) -> dict[str, Any]:
        """Store ``change(current)``, keeping what the subresource may not touch.

        ``change`` runs under the store's lock, so a patch always applies to the latest
        version and never fails with a conflict the client did not ask for.
        """

        def mutate(old: dict[str, Any]) -> dict[str, Any]:
            new = change(copy.deepcopy(old))
            new_rv = (new.get("metadata") or {}).get("resourceVersion")
            if new_rv and new_rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict("pods", name, "the object has been modified; please apply your "
                                                    "changes to the latest version and try again")
            new = prune_object("Pod", new)
            new_uid = (new.get("metadata") or {}).get("uid")
            if new_uid and new_uid != old["metadata"]["uid"]:
                raise errors.conflict("pods", name, f"Precondition failed: UID in precondition: {new_uid}, "
                                                    f"UID in object meta: {old['metadata']['uid']}")
            if status_only:
                old["status"] = new.get("status") or {}
                return old
            validate_pod_update(new)
            new_meta = new.get("metadata") or {}
            for key in _MUTABLE_META:
                if new_meta.get(key):
                    old["metadata"][key] = new_meta[key]
                else:
                    old["metadata"].pop(key, None)
            _check_spec_update(old, new.get("spec") or {})
            return old

        return self.store.update("pods", namespace, name, mutate, expect_rv=expect_rv)

    def delete_pod(self, namespace: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
        pod = self.store.get("pods", namespace, name)
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != pod["metadata"]["uid"]:
            raise errors.conflict("pods", name, f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                                                f"UID in object meta: {pod['metadata']['uid']}")
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        grace = max(int(grace), 0)
        phase = pod.get("status", {}).get("phase")
        if not pod["spec"].get("nodeName") or phase in ("Succeeded", "Failed"):
            grace = 0
        meta = pod["metadata"]
        if grace > 0 and meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds", 0) <= grace:
            return pod  # already terminating, and not asked to hurry

        def mark(current: dict[str, Any]) -> dict[str, Any]:
            current["metadata"]["deletionTimestamp"] = now_rfc3339(grace)
            current["metadata"]["deletionGracePeriodSeconds"] = grace
            return current

        marked = self.store.update("pods", namespace, name, mark)
        if grace == 0:
            return self.store.delete("pods", namespace, name, uid=marked["metadata"]["uid"])
        return marked

    def bind_pod(self, namespace: str, name: str, binding: dict[str, Any]) -> None:
        target = (binding.get("target") or {}).get("name")
        if not target:
            raise errors.invalid("Binding", name, [{"reason": "FieldValueRequired", "message": "Required value",
                                                    "field": "target.name"}])

        def bind(pod: dict[str, Any]) -> dict[str, Any]:
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("pods/binding", name, f"pod {name} is being deleted, cannot be assigned to a host")
            assigned = pod["spec"].get("nodeName")
            if assigned:
                raise errors.conflict("pods/binding", name, f'pod {name} is already assigned to node "{assigned}"')
            pod["spec"]["nodeName"] = target
            conditions = [c for c in pod["status"].get("conditions", []) if c.get("type") != "PodScheduled"]
            pod["status"]["conditions"] = conditions + [_condition("PodScheduled", "True")]
            return pod

        self.store.update("pods", namespace, name, bind)

    # -- namespaces and nodes ------------------------------------------------------------
    def create_cluster_object(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = RESOURCES[resource]["kind"]
        obj = prune_object(kind, body)
        meta = obj.setdefault("metadata", {})
        for server_owned in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "managedFields"):
            meta.pop(server_owned, None)
        _name_from_prefix(meta)
        name = meta.get("name") or ""
        meta.pop("namespace", None)
        if resource == "namespaces":
            if not name or not DNS1123_LABEL.match(name) or len(name) > 63:
                raise errors.invalid(kind, name, [{"reason": "FieldValueInvalid" if name else "FieldValueRequired",
                                                   "message": f'Invalid value: "{name}": {LABEL_MESSAGE}'
                                                   if name else "Required value", "field": "metadata.name"}])
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        else:
            causes = validate_object_name(name) if name else [
                {"reason": "FieldValueRequired", "message": "Required value", "field": "metadata.name"}]
            if causes:
                raise errors.invalid(kind, name, causes)
        return self.store.create(resource, obj, kind=kind)

    def update_cluster_object(self, resource: str, name: str, change: Change, *, status_only: bool,
                              expect_rv: str | None = None) -> dict[str, Any]:
        """Store ``change(current)``: the status alone, or everything but the status and the server's metadata."""
        kind = RESOURCES[resource]["kind"]

        def mutate(old: dict[str, Any]) -> dict[str, Any]:
            new = prune_object(kind, change(old))
            if status_only:
                old["status"] = new.get("status") or {}
                return old
            new["metadata"] = dict(old["metadata"], labels=(new.get("metadata") or {}).get("labels"),
                                   annotations=(new.get("metadata") or {}).get("annotations"))
            for key in ("labels", "annotations"):
                if new["metadata"][key] is None:
                    del new["metadata"][key]
            new["status"] = old.get("status", {})
            new.setdefault("kind", kind)
            new.setdefault("apiVersion", "v1")
            return new

        return self.store.update(resource, "", name, mutate, expect_rv=expect_rv)

    def delete_namespace(self, name: str) -> dict[str, Any]:
        """No namespace controller runs here, so a namespace and its pods go at once."""
        self.store.get("namespaces", "", name)
        pods, _ = self.store.list("pods", name)
        for pod in pods:
            try:
                self.store.delete("pods", name, pod["metadata"]["name"])
            except ApiError:
                pass
        return self.store.delete("namespaces", "", name)


def _name_from_prefix(meta: dict[str, Any]) -> None:
    """A nameless object with ``generateName`` gets that prefix and random letters, as the server names it."""
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + "".join(
            random.choice(GENERATE_NAME_ALPHABET) for _ in range(GENERATE_NAME_LENGTH))


def _condition(kind: str, status: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}


def _check_spec_update(old: dict[str, Any], new_spec: dict[str, Any]) -> None:
    """Only images, activeDeadlineSeconds and tolerations may change, as upstream allows."""
    old_spec = old["spec"]
    candidate = copy.deepcopy(new_spec)
    default_pod({"spec": candidate})
    for key in ("activeDeadlineSeconds", "tolerations"):
        if key in candidate:
            old_spec[key] = candidate[key]
    old_containers, new_containers = old_spec.get("containers", []), candidate.get("containers", [])
    comparable_old = copy.deepcopy(old_spec)
    comparable_new = copy.deepcopy(candidate)
    for spec in (comparable_old, comparable_new):
        for key in ("activeDeadlineSeconds", "tolerations", "nodeName"):
            spec.pop(key, None)
        for container in spec.get("containers", []):
            container.pop("image", None)
            container.pop("imagePullPolicy", None)
    if comparable_old != comparable_new:
        raise errors.invalid("Pod", old["metadata"]["name"], [{
            "reason": "FieldValueForbidden", "field": "spec",
            "message": "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
                       "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` "
                       "(only additions to existing tolerations)"}])
    for old_container, new_container in zip(old_containers, new_containers):
        if new_container.get("image"):
            old_container["image"] = new_container["image"]
