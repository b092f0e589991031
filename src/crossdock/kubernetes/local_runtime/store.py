"""Objects of the local API, their resourceVersions and the event history watches replay.

One global counter orders every change, as etcd's revision does, so a client that saw
version N can resume a watch from N and miss nothing. History is finite: once a version is
compacted away a watch from it gets 410 Expired, exactly the signal a client must handle
on a real cluster (relist, then watch again).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from crossdock.kubernetes.local_runtime.errors import already_exists, conflict, expired, not_found
from crossdock.kubernetes.local_runtime.private_files import private_dir, write_private
from crossdock.kubernetes.local_runtime.settings import DEFAULT_HISTORY_LIMIT

#: Seconds between writes of the state file while changes keep coming.
SNAPSHOT_INTERVAL = 0.5
SNAPSHOT_NAME = "api-state.json"

Key = tuple[str, str, str]  # (resource, namespace or "", name)
Matcher = Callable[[dict[str, Any]], bool]


def now_rfc3339(offset: float = 0.0) -> str:
    moment = datetime.fromtimestamp(time.time() + offset, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    resource: str
    obj: dict[str, Any]
    old: dict[str, Any] | None
    _encoded: dict[str, bytes] = field(default_factory=dict)

    def encoded(self, event_type: str, kind: str) -> bytes:
        """The watch line, serialized once however many watchers read it."""
        line = self._encoded.get(event_type)
        if line is None:
            body = dict(self.obj, kind=kind, apiVersion="v1") if "kind" not in self.obj else self.obj
            line = json.dumps({"type": event_type, "object": body}, separators=(",", ":")).encode() + b"\n"
            self._encoded[event_type] = line
        return line


class ObjectStore:
    """Thread-safe map of API objects with a replayable, compactable event history."""

    def __init__(self, *, history_limit: int = DEFAULT_HISTORY_LIMIT, state_dir: Path | None = None) -> None:
        self.history_limit = max(history_limit, 10)
        self._cond = threading.Condition()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._rv = 0
        self._compacted = 0  # every event with rv <= this is gone
        self._history: list[Event] = []
        self._closed = False
        self._dirty = False
        self._path = Path(state_dir) / SNAPSHOT_NAME if state_dir else None
        self._snapshotter: threading.Thread | None = None
        if self._path is not None:
            self._load()
            self._snapshotter = threading.Thread(target=self._snapshot_loop, name="api-snapshot", daemon=True)
            self._snapshotter.start()

    # -- persistence -------------------------------------------------------------------
    def _load(self) -> None:
        assert self._path is not None
        if not self._path.exists():
            return
        data = json.loads(self._path.read_text(encoding="utf-8"))
        self._rv = int(data.get("resourceVersion", 0))
        self._compacted = self._rv  # history is not saved: older versions are gone
        for item in data.get("objects", []):
            resource, obj = item["resource"], item["object"]
            meta = obj["metadata"]
            self._objects[(resource, meta.get("namespace", ""), meta["name"])] = obj

    def _write_snapshot(self) -> None:
        assert self._path is not None
        with self._cond:
            if not self._dirty:
                return
            data = {"resourceVersion": self._rv,
                    "objects": [{"resource": key[0], "object": obj} for key, obj in self._objects.items()]}
            self._dirty = False
        private_dir(self._path.parent)
        write_private(self._path, json.dumps(data))

    def _snapshot_loop(self) -> None:
        while not self._closed:
            time.sleep(SNAPSHOT_INTERVAL)
            self._write_snapshot()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._path is not None:
            self._write_snapshot()

    # -- reading -----------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def compacted_version(self) -> int:
        return self._compacted

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        with self._cond:
            obj = self._objects.get((resource, namespace, name))
        if obj is None:
            raise not_found(resource, name)
        return obj

    def exists(self, resource: str, namespace: str, name: str) -> bool:
        return (resource, namespace, name) in self._objects

    def list(self, resource: str, namespace: str | None, matches: Matcher | None = None
             ) -> tuple[list[dict[str, Any]], int]:
        with self._cond:
            items = [obj for (res, ns, _), obj in self._objects.items()
                     if res == resource and (namespace is None or ns == namespace)]
            rv = self._rv
        if matches is not None:
            items = [obj for obj in items if matches(obj)]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items, rv

    # -- writing -----------------------------------------------------------------------
    def _record(self, event_type: str, resource: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        self._history.append(Event(self._rv, event_type, resource, obj, old))
        if len(self._history) > self.history_limit:
            drop = len(self._history) - self.history_limit + self.history_limit // 10
            self._compacted = self._history[drop - 1].rv
            del self._history[:drop]
        self._dirty = True
        self._cond.notify_all()

    def create(self, resource: str, obj: dict[str, Any], *, kind: str) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        key = (resource, meta.get("namespace", ""), meta["name"])
        with self._cond:
            if key in self._objects:
                raise already_exists(resource, meta["name"])
            self._rv += 1
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = str(self._rv)
            meta["creationTimestamp"] = now_rfc3339()
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", "v1")
            self._objects[key] = obj
            self._record("ADDED", resource, obj, None)
        return obj

    def update(self, resource: str, namespace: str, name: str,
               mutate: Callable[[dict[str, Any]], dict[str, Any]], *, expect_rv: str | None = None
               ) -> dict[str, Any]:
        """Apply ``mutate`` to a copy under the lock; a no-op change keeps the version."""
        key = (resource, namespace, name)
        with self._cond:
            old = self._objects.get(key)
            if old is None:
                raise not_found(resource, name)
            if expect_rv and expect_rv != old["metadata"]["resourceVersion"]:
                raise conflict(resource, name, "the object has been modified; please apply your "
                                               "changes to the latest version and try again")
            new = mutate(copy.deepcopy(old))
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return old
            self._rv += 1
            new["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[key] = new
            self._record("MODIFIED", resource, new, old)
        return new

    def delete(self, resource: str, namespace: str, name: str, *, uid: str | None = None) -> dict[str, Any]:
        key = (resource, namespace, name)
        with self._cond:
            old = self._objects.get(key)
            if old is None:
                raise not_found(resource, name)
            if uid and old["metadata"].get("uid") != uid:
                raise conflict(resource, name, f"Precondition failed: UID in precondition: {uid}, "
                                               f"UID in object meta: {old['metadata'].get('uid')}")
            del self._objects[key]
            self._rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._record("DELETED", resource, gone, old)
        return gone

    def compact(self) -> int:
        """Drop all history now (a test hook): every older version then answers 410."""
        with self._cond:
            self._compacted = self._rv
            self._history.clear()
            self._cond.notify_all()
            return self._compacted

    # -- watching ----------------------------------------------------------------------
    def watch(self, *, resource: str, kind: str, since: int | None, matches: Matcher,
              timeout: float, stop: threading.Event) -> Iterator[bytes]:
        """Watch lines for changes after ``since`` (``None``: current state as ADDED first).

        A selector turns a change that moves an object out of (into) the selection into a
        DELETED (ADDED) event, as the real watch cache does.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            if since is None or since == 0:
                current = [obj for (res, _, _), obj in self._objects.items() if res == resource and matches(obj)]
                last = self._rv
            else:
                if since < self._compacted:
                    yield self._expired_line(since)
                    return
                current, last = [], since
        for obj in sorted(current, key=lambda o: int(o["metadata"]["resourceVersion"])):
            yield json.dumps({"type": "ADDED", "object": dict(obj, kind=kind, apiVersion="v1")},
                             separators=(",", ":")).encode() + b"\n"
        while not stop.is_set():
            with self._cond:
                while self._rv <= last and not self._closed and not stop.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._cond.wait(min(remaining, 1.0))
                if self._closed or stop.is_set():
                    return
                if last < self._compacted:
                    yield self._expired_line(last)
                    return
                start = last - self._compacted  # index of the first event after ``last``
                events = self._history[start:] if self._history and self._history[0].rv == self._compacted + 1 \
                    else [e for e in self._history if e.rv > last]
                last = self._rv
            for event in events:
                if event.resource != resource:
                    continue
                now_in = event.type != "DELETED" and matches(event.obj)
                was_in = event.old is not None and matches(event.old)
                if event.type == "DELETED":
                    if was_in:
                        yield event.encoded("DELETED", kind)
                elif now_in and was_in:
                    yield event.encoded("MODIFIED", kind)
                elif now_in:
                    yield event.encoded("ADDED", kind)
                elif was_in:
                    yield event.encoded("DELETED", kind)
            if time.monotonic() >= deadline:
                return

    def _expired_line(self, since: int) -> bytes:
        status = expired(f"too old resource version: {since} ({self._compacted + 1})").status()
        return json.dumps({"type": "ERROR", "object": status}, separators=(",", ":")).encode() + b"\n"
