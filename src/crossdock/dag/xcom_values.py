"""An XCom value as text: JSON, plus the few Python types Airflow's serializer also keeps.

A value leaves the try that pushed it as text (on the runner's last stderr line, in a
Celery result, in a pod's log), is stored as text in the ``xcom`` table and handed to
downstream tries as text; only the try that pulls it turns it back into Python. So the
format must be plain JSON that every one of those channels carries unchanged. Types JSON
lacks (datetime, date, time, timedelta, tuple, set) are wrapped as a one-key object
``{"__crossdock_type__": [type, payload]}``; anything else is refused when it is pushed,
naming its type, instead of being stored as something it is not.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any

from crossdock.dag.exceptions import XComError

#: The key of the object that wraps a value of a type JSON has no form for.
TYPE_TAG = "__crossdock_type__"
#: The key a callable's return value is pushed under.
XCOM_RETURN_KEY = "return_value"


def _encode(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        encoded = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise XComError(f"{path} has a key of type {type(key).__name__}; "
                                f"XCom values are JSON, whose object keys are strings")
            encoded[key] = _encode(item, f"{path}[{key!r}]")
        return encoded
    if isinstance(value, list):
        return [_encode(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return {TYPE_TAG: ["tuple", [_encode(item, f"{path}[{index}]") for index, item in enumerate(value)]]}
    if isinstance(value, (set, frozenset)):
        items = [_encode(item, f"{path} item") for item in value]
        return {TYPE_TAG: ["set", sorted(items, key=repr)]}
    if isinstance(value, datetime):
        return {TYPE_TAG: ["datetime", value.isoformat()]}
    if isinstance(value, date):
        return {TYPE_TAG: ["date", value.isoformat()]}
    if isinstance(value, time):
        return {TYPE_TAG: ["time", value.isoformat()]}
    if isinstance(value, timedelta):
        return {TYPE_TAG: ["timedelta", value.total_seconds()]}
    raise XComError(f"{path} is of type {type(value).__module__}.{type(value).__qualname__}, which "
                    f"crossdock cannot store as an XCom (JSON values, datetime, date, time, timedelta, "
                    f"tuple and set can be)")


def _decode_hook(obj: dict) -> Any:
    tagged = obj.get(TYPE_TAG) if len(obj) == 1 else None
    if not isinstance(tagged, list) or len(tagged) != 2:
        return obj
    kind, payload = tagged
    if kind == "tuple":
        return tuple(payload)
    if kind == "set":
        return set(_hashable(item) for item in payload)
    if kind == "datetime":
        return datetime.fromisoformat(payload)
    if kind == "date":
        return date.fromisoformat(payload)
    if kind == "time":
        return time.fromisoformat(payload)
    if kind == "timedelta":
        return timedelta(seconds=payload)
    return obj


def _hashable(item: Any) -> Any:
    return tuple(item) if isinstance(item, list) else item


def serialize_value(value: Any, *, what: str = "the value", limit: int | None = None) -> str:
    """``value`` as XCom text; raises :class:`XComError` naming ``what`` when it cannot be one.

    :param limit: the most bytes the text may have (``[core] max_xcom_size``); None for no limit.
    """
    try:
        text = json.dumps(_encode(value, what), separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        raise XComError(f"{what} is nested too deeply (or contains itself) to be stored as an XCom") from None
    except (TypeError, ValueError) as exc:
        raise XComError(f"{what} cannot be stored as an XCom: {exc}") from None
    if limit is not None and limit > 0:
        size = len(text.encode("utf-8"))
        if size > limit:
            raise XComError(f"{what} is {size:,} bytes as JSON, over the limit of {limit:,} "
                            f"([core] max_xcom_size); pass a reference to the data (a path, a URI) instead")
    return text


def deserialize_value(text: str) -> Any:
    """The Python value of XCom text made by :func:`serialize_value`."""
    return json.loads(text, object_hook=_decode_hook)


def from_json_object(obj: Any) -> Any:
    """The Python value of XCom text already parsed by ``json.loads`` (tags still in place)."""
    if isinstance(obj, dict):
        return _decode_hook({key: from_json_object(item) for key, item in obj.items()})
    if isinstance(obj, list):
        return [from_json_object(item) for item in obj]
    return obj
