"""What a try is handed with its command: the run's conf and the values it may pull.

A try never opens the metadata database (design principle 1), so whatever it reads of
its run must travel with it. The scheduler builds this when it queues the try and puts
it in the task command as ``--inputs``; every executor already carries the command
unchanged (a Celery message, a pod's args, the local executor's pipe), and a signed
Celery command signs it too. It is JSON, compressed and base64-encoded so it stays one
argv word that needs no quoting anywhere.

A single argv word is limited by the kernel (``MAX_ARG_STRLEN``, 128 KiB) where a pod
or a fresh interpreter execs the command, so :data:`MAX_INPUTS_CHARS` bounds it; the
scheduler drops values in a fixed order past that (see
:mod:`crossdock.scheduler.value_handover`) and says which were withheld.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from crossdock.runner.command import UsageError

#: The most characters the encoded inputs may have: under Linux's 128 KiB for one exec'd argv word.
MAX_INPUTS_CHARS = 120_000

#: (task_id, map_index, key) of one value handed over.
ValueId = tuple[str, int, str]


@dataclass(frozen=True)
class TryInputs:
    """The handover: the run's ``conf`` and ``run_type``, and XCom values by id.

    :param values: (task_id, map_index, key) → the value as parsed JSON, still in the
        tagged form of :mod:`crossdock.dag.xcom_values` (decoded when pulled).
    :param upstream: the task ids whose values were considered for handing over (the
        try's upstream tasks, direct or not); a pull from any other task finds nothing.
    :param withheld: task ids among those whose values did not fit :data:`MAX_INPUTS_CHARS`.
    :param run: facts of the run a try cannot look up: ``data_interval_start`` and
        ``data_interval_end`` when they differ from the logical date, and the
        ``prev_*_success`` dates of the DAG's last successful run before it (ISO text).
    """

    conf: Mapping[str, Any] | None = None
    run_type: str | None = None
    values: Mapping[ValueId, Any] = field(default_factory=dict)
    upstream: frozenset[str] = frozenset()
    withheld: frozenset[str] = frozenset()
    run: Mapping[str, str] = field(default_factory=dict)


def encode_inputs(*, conf: Mapping[str, Any] | None, run_type: str | None,
                  values: Iterable[tuple[str, int, str, str]], upstream: Iterable[str],
                  withheld: Iterable[str] = (), run: Mapping[str, str] | None = None) -> str:
    """The ``--inputs`` word; ``values`` are (task_id, map_index, key, XCom text) as stored.

    The texts are spliced in as they are (they are JSON already), so building the
    handover costs no decoding of the values.
    """
    parts = [f"[{json.dumps(task_id)},{int(map_index)},{json.dumps(key)},{text}]"
             for task_id, map_index, key, text in values]
    payload = (f'{{"conf":{json.dumps(conf) if conf else "null"},"run_type":{json.dumps(run_type)},'
               f'"upstream":{json.dumps(sorted(upstream))},"withheld":{json.dumps(sorted(withheld))},'
               f'"run":{json.dumps(dict(run or {}))},'
               f'"values":[{",".join(parts)}]}}')
    return base64.urlsafe_b64encode(zlib.compress(payload.encode("utf-8"), 6)).decode("ascii")


def decode_inputs(word: str) -> TryInputs:
    """The handover an ``--inputs`` word holds; a corrupt word is a :class:`UsageError`."""
    try:
        data = json.loads(zlib.decompress(base64.urlsafe_b64decode(word.encode("ascii"))))
        values = {(str(task_id), int(map_index), str(key)): value
                  for task_id, map_index, key, value in data.get("values", ())}
        conf = data.get("conf")
        if conf is not None and not isinstance(conf, dict):
            raise ValueError("conf is not an object")
        return TryInputs(conf=conf, run_type=data.get("run_type"), values=values,
                         upstream=frozenset(data.get("upstream", ())),
                         withheld=frozenset(data.get("withheld", ())), run=dict(data.get("run") or {}))
    except (ValueError, TypeError, zlib.error, AttributeError) as exc:
        raise UsageError(f"--inputs is not a valid handover of values: {exc}") from None
