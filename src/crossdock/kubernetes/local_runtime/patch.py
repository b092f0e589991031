"""The three PATCH flavours the API accepts: JSON merge, strategic merge and JSON patch.

The official Python client sends dict bodies as strategic merge and kubectl does too, so
lists the pods schema declares as keyed (containers by name, conditions by type, ...)
merge item by item instead of being replaced.
"""

from __future__ import annotations

import copy
from typing import Any

from crossdock.kubernetes.local_runtime.errors import ApiError, bad_request

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

#: List fields of Pod/Node/Namespace that strategic merge merges by the given key.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "containerStatuses": "name", "initContainerStatuses": "name",
    "ephemeralContainerStatuses": "name", "conditions": "type", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath", "ports": "containerPort",
    "addresses": "type", "imagePullSecrets": "name", "ownerReferences": "uid",
    "hostAliases": "ip", "podIPs": "ip", "readinessGates": "conditionType",
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, list):
        key = MERGE_KEYS.get(field)
        if key is None or not isinstance(target, list):
            return copy.deepcopy(patch)
        merged = [copy.deepcopy(item) for item in target]
        for item in patch:
            if not isinstance(item, dict) or key not in item:
                raise bad_request(f"map: {item} does not contain declared merge key: {key}")
            directive = item.get("$patch")
            index = next((i for i, old in enumerate(merged)
                          if isinstance(old, dict) and old.get(key) == item[key]), None)
            if directive == "delete":
                if index is not None:
                    merged.pop(index)
                continue
            clean = {k: v for k, v in item.items() if k != "$patch"}
            if index is None:
                merged.append(strategic_merge_patch({}, clean))
            else:
                merged[index] = strategic_merge_patch(merged[index], clean)
        return merged
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if name.startswith("$"):
            continue
        if value is None:
            result.pop(name, None)
        else:
            result[name] = strategic_merge_patch(result.get(name), value, name)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902 add/remove/replace/test, enough for the fields pods expose."""
    doc = copy.deepcopy(target)
    for operation in operations:
        op, parts = operation.get("op"), _pointer(operation.get("path", ""))
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        try:
            if op == "add" and isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), operation.get("value"))
            elif op in ("add", "replace"):
                if isinstance(parent, list):
                    parent[int(last)] = operation.get("value")
                else:
                    if op == "replace" and last not in parent:
                        raise ApiError(422, f"replace operation does not apply: doc is missing key: {operation['path']}")
                    parent[last] = operation.get("value")
            elif op == "remove":
                if isinstance(parent, list):
                    parent.pop(int(last))
                else:
                    parent.pop(last)
            elif op == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
                if current != operation.get("value"):
                    raise ApiError(422, f"testing value {operation['path']} failed")
            else:
                raise bad_request(f"Unexpected kind: {op}")
        except (KeyError, IndexError, ValueError) as exc:
            raise ApiError(422, f"the server rejected our request due to an error in our request: {exc}") from None
    return doc


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    kind = (content_type or "").split(";")[0].strip()
    if kind == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json patch must be a list of operations")
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise bad_request("patch body must be a JSON object")
    if kind == MERGE_PATCH:
        return merge_patch(target, patch)
    if kind == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(target, patch)
    raise ApiError(415, f'the body of the request was in an unknown format - accepted media types include: '
                        f'{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}')
