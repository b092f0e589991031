"""What the pods API accepts: unknown fields dropped, defaults filled in, bad pods refused.

The real v1.20 server silently drops fields it does not know (no strict decoding then), so
we prune against the official client's own models, which are generated from the same
OpenAPI schema. Defaults and 422 wording follow the real server, because clients diff and
log what comes back.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes.client import models as client_models

from crossdock.kubernetes.local_runtime.errors import bad_request, invalid
from crossdock.kubernetes.pod_validation import canonical_quantity, pod_problems

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
RESTART_POLICIES = ("Always", "OnFailure", "Never")
MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
DEFAULT_GRACE_SECONDS = 30

_MODEL_BY_KIND = {"Pod": "V1Pod", "Namespace": "V1Namespace", "Node": "V1Node", "Binding": "V1Binding"}


def prune(value: Any, type_name: str) -> Any:
    """``value`` with every field unknown to the API schema removed (as v1.20 decodes)."""
    if value is None:
        return None
    if type_name.startswith("List[") and isinstance(value, list):
        inner = type_name[5:-1]
        return [prune(item, inner) for item in value]
    if type_name.startswith("Dict[") and isinstance(value, dict):
        inner = type_name[5:-1].split(",", 1)[1].strip()
        return {key: prune(item, inner) for key, item in value.items()}
    model = getattr(client_models, type_name, None)
    if model is None or not hasattr(model, "openapi_types") or not isinstance(value, dict):
        return value
    out = {}
    for attr, json_key in model.attribute_map.items():
        if json_key in value:
            out[json_key] = prune(value[json_key], model.openapi_types[attr])
    return out


def prune_object(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    model = _MODEL_BY_KIND.get(kind)
    return prune(obj, model) if model else obj


def _cause(field: str, reason: str, message: str) -> dict[str, str]:
    return {"reason": reason, "message": message, "field": field}


def _required(field: str, detail: str = "") -> dict[str, str]:
    return _cause(field, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))


def _invalid_value(field: str, value: Any, detail: str) -> dict[str, str]:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return _cause(field, "FieldValueInvalid", f"Invalid value: {shown}: {detail}")


def validate_object_name(name: str, field: str = "metadata.name") -> list[dict[str, str]]:
    causes = []
    if len(name) > MAX_NAME_LENGTH:
        causes.append(_invalid_value(field, name, f"must be no more than {MAX_NAME_LENGTH} characters"))
    if not DNS1123_SUBDOMAIN.match(name):
        causes.append(_invalid_value(field, name, SUBDOMAIN_MESSAGE))
    return causes


def value_causes(pod: dict[str, Any]) -> list[dict[str, str]]:
    """422 causes for labels, annotations, quantities and env; a 400 for a value that does not decode.

    The real server decodes before it validates: a number where a string belongs or a
    quantity that does not parse fails the request as a whole, with the decoder's words.
    """
    problems = pod_problems(pod)
    for problem in problems:
        if problem.decode:
            raise bad_request(problem.decode_message())
    return [_cause(p.field, "FieldValueTooLong" if p.message.startswith("Too long") else "FieldValueInvalid",
                   p.message) for p in problems]


def validate_pod_update(pod: dict[str, Any]) -> None:
    """An update may change labels and annotations: the same value rules as on create."""
    meta = pod.get("metadata") or {}
    causes = value_causes({"metadata": meta})
    if causes:
        raise invalid("Pod", meta.get("name") or "", causes)


def validate_pod(pod: dict[str, Any]) -> None:
    """Raise a 400 (undecodable value) or a 422 listing every problem, or return when the pod may be stored."""
    value_problems = value_causes(pod)
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    name = meta.get("name") or ""
    causes: list[dict[str, str]] = []
    if not name:
        causes.append(_required("metadata.name", "name or generateName is required"))
    else:
        causes.extend(validate_object_name(name))
    containers = spec.get("containers") or []
    if not containers:
        causes.append(_required("spec.containers"))
    seen: set[str] = set()
    for index, container in enumerate(containers):
        prefix = f"spec.containers[{index}]"
        cname = container.get("name") or ""
        if not cname:
            causes.append(_required(f"{prefix}.name"))
        elif len(cname) > MAX_LABEL_LENGTH or not DNS1123_LABEL.match(cname):
            causes.append(_invalid_value(f"{prefix}.name", cname, LABEL_MESSAGE))
        elif cname in seen:
            causes.append(_cause(f"{prefix}.name", "FieldValueDuplicate", f'Duplicate value: "{cname}"'))
        seen.add(cname)
        if not container.get("image"):
            causes.append(_required(f"{prefix}.image"))
    policy = spec.get("restartPolicy")
    if policy not in RESTART_POLICIES:
        supported = ", ".join(f'"{p}"' for p in RESTART_POLICIES)
        causes.append(_cause("spec.restartPolicy", "FieldValueNotSupported",
                             f'Unsupported value: "{policy}": supported values: {supported}'))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not (isinstance(deadline, int) and 1 <= deadline <= 2147483647):
        causes.append(_invalid_value("spec.activeDeadlineSeconds", deadline,
                                     "must be between 1 and 2147483647, inclusive"))
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        causes.append(_invalid_value("spec.terminationGracePeriodSeconds", grace,
                                     "must be greater than or equal to 0"))
    causes.extend(value_problems)
    if causes:
        raise invalid("Pod", name, causes)


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """Fill the defaults the real server fills, so a pod reads back the same on both."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("priority", 0)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    for container in spec.get("containers") or []:
        if not isinstance(container, dict):
            continue
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        if container.get("image"):
            container.setdefault("imagePullPolicy", _image_pull_policy(container["image"]))
        resources = container.setdefault("resources", {})
        limits = resources.get("limits") or {}
        if limits:
            requests = resources.setdefault("requests", {})
            for key, amount in limits.items():
                requests.setdefault(key, amount)
        for kind in ("limits", "requests"):
            if isinstance(resources.get(kind), dict):
                resources[kind] = {key: _canonical(amount) for key, amount in resources[kind].items()}
    return pod


def _canonical(amount: Any) -> Any:
    """Quantities read back in the server's form (``0.5`` → ``"500m"``); a bad one is left for validation."""
    try:
        return canonical_quantity(amount)
    except ValueError:
        return amount


def qos_class(pod: dict[str, Any]) -> str:
    """BestEffort / Guaranteed / Burstable, by the rule kubelet and the API share."""
    containers = (pod.get("spec") or {}).get("containers") or []
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        if limits or requests:
            any_set = True
        for key in ("cpu", "memory"):
            if key not in limits or requests.get(key, limits.get(key)) != limits.get(key):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
