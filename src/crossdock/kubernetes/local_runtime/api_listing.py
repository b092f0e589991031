"""Reading a collection: a list (paged with ``limit``/``continue``, or as a Table) or a watch stream.

An informer lists, then watches from the list's resourceVersion, and relists when told
its version is too old; the paging tokens, the watch framing and the random end of a
watch without ``timeoutSeconds`` are what it relies on, so they follow the real server.
"""

from __future__ import annotations

import base64
import json
import random
from typing import TYPE_CHECKING, Any, Callable

from crossdock.kubernetes.local_runtime.api_objects import RESOURCES
from crossdock.kubernetes.local_runtime.errors import bad_request
from crossdock.kubernetes.local_runtime.selector import FieldSelector, LabelSelector
from crossdock.kubernetes.local_runtime.table import pods_table, wants_table

if TYPE_CHECKING:
    from crossdock.kubernetes.local_runtime.api_handler import ApiHandler

#: Without timeoutSeconds a watch ends after a random 30-60 minutes, as on a real server.
MIN_WATCH_SECONDS = 1800


def serve_collection(handler: "ApiHandler", query: dict[str, str], resource: str, namespace: str | None) -> None:
    """Answer a GET of ``resource`` (in ``namespace``, or all of them when None)."""
    spec = RESOURCES[resource]
    labels = LabelSelector.parse(query.get("labelSelector"))
    fields = FieldSelector.parse(query.get("fieldSelector"), fields=spec["fields"])

    def matches(obj: dict[str, Any]) -> bool:
        if namespace is not None and obj["metadata"].get("namespace") != namespace:
            return False
        return labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)

    if query.get("watch") in ("1", "true", "True"):
        _watch(handler, resource, spec["kind"], query, matches)
        return
    items, rv = handler.api.store.list(resource, namespace, matches)
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if query.get("continue"):
        after = _decode_continue(query["continue"])
        items = [o for o in items if f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" > after]
    limit = int(query.get("limit") or 0)
    if limit > 0 and len(items) > limit:
        last = items[limit - 1]["metadata"]
        meta["continue"] = _encode_continue(rv, f"{last.get('namespace', '')}/{last['name']}")
        meta["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    if resource == "pods" and wants_table(handler.headers.get("Accept")):
        table = pods_table(items, resource_version=meta["resourceVersion"], continue_token=meta.get("continue"))
        return handler._send_json(200, table)
    bare = [{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")} for obj in items]
    handler._send_json(200, {"kind": f"{spec['kind']}List", "apiVersion": "v1", "metadata": meta, "items": bare})


def _watch(handler: "ApiHandler", resource: str, kind: str, query: dict[str, str],
           matches: Callable[[dict[str, Any]], bool]) -> None:
    raw_rv = query.get("resourceVersion") or ""
    try:
        since = int(raw_rv) if raw_rv else None
    except ValueError:
        raise bad_request(f'resourceVersion: Invalid value: "{raw_rv}": must be a non-negative integer') from None
    timeout = float(query.get("timeoutSeconds") or random.uniform(MIN_WATCH_SECONDS, 2 * MIN_WATCH_SECONDS))
    lines = handler.api.store.watch(resource=resource, kind=kind, since=since, matches=matches,
                                    timeout=timeout, stop=handler.api.stopping)
    handler._start_stream("application/json")
    try:
        for line in lines:
            handler._chunk(line)
        handler._end_stream()
    except (BrokenPipeError, ConnectionResetError, OSError):
        handler.close_connection = True
    finally:
        lines.close()


def _encode_continue(rv: int, after: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": after}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(padded))["start"]
    except (ValueError, KeyError, TypeError):
        raise bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                          "(version meta.k8s.io/v1)") from None
