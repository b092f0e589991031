"""A try's XComs: what it was handed, what it pushes, and Airflow's ``xcom_pull`` over them.

The try has no database (design principle 1). It pulls from the values the scheduler
handed over with its command (:mod:`crossdock.runner.try_inputs`: those of its upstream
tasks in its own run) and pushes into a list that the runner reports as its last
stderr line when the try succeeds (:func:`values_line`); the executor's channel carries
that line back and the scheduler stores it. So ``xcom_pull`` answers what Airflow's
would for a DAG whose pulls follow its edges, and says so plainly when asked for
something that cannot be here (another DAG, an earlier run, a withheld value) instead
of answering None as if the value did not exist.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Iterable

from crossdock.dag.exceptions import XComError
from crossdock.dag.xcom_values import XCOM_RETURN_KEY, from_json_object, serialize_value
from crossdock.runner.try_inputs import TryInputs

log = logging.getLogger("crossdock.task")

#: Start of the runner's line that carries a successful try's pushed values.
VALUES_PREFIX = "crossdock: task values: "
#: The report of a try that pushed nothing, written where the task's own output shares the stream.
EMPTY_VALUES_LINE = f"{VALUES_PREFIX}{{}}\n"
#: The key, inside the values line, of how the try ended when that is more than "success":
#: ``{"state": "skipped", "reason": ...}``, or a branch's ``{"follow": [task ids]}``, or a
#: short-circuit's ``{"skip_descendants": true}``. No XCom may use it.
OUTCOME_KEY = "__crossdock_outcome__"
#: The most bytes of values one try may push in all (each value is also held to ``[core] max_xcom_size``).
MAX_TRY_VALUES_BYTES = 512 * 1024


class TryValues:
    """The values of one try: handed over (read-only) and pushed (reported at the end)."""

    def __init__(self, *, dag_id: str, task_id: str, map_index: int, inputs: TryInputs | None,
                 dag_task_ids: Iterable[str] = (), value_limit: int | None = None):
        self.dag_id = dag_id
        self.task_id = task_id
        self.map_index = map_index
        self.inputs = inputs or TryInputs()
        self.dag_task_ids = frozenset(dag_task_ids)
        self.value_limit = value_limit
        #: key → XCom text, in push order (a key pushed again replaces its value).
        self.pushed: dict[str, str] = {}
        #: How the try ended beyond success (see :data:`OUTCOME_KEY`); reported with the values.
        self.outcome: dict[str, Any] = {}

    def follow_only(self, task_ids: Iterable[str]) -> None:
        """A branch chose ``task_ids``: the scheduler skips the task's other downstream tasks."""
        self.outcome["follow"] = sorted(set(task_ids))

    def skip_descendants(self) -> None:
        """A short-circuit: every task downstream of this one is skipped, whatever its rule."""
        self.outcome["skip_descendants"] = True

    def mark_skipped(self, reason: str) -> None:
        self.outcome.update(state="skipped", reason=reason)

    def reschedule(self, due: datetime, first_poke: datetime | None) -> None:
        """A sensor in reschedule mode: poke again at ``due``; its timeout counts from ``first_poke``."""
        self.outcome.update(state="up_for_reschedule", reschedule_at=due.isoformat(),
                            first_poke=first_poke.isoformat() if first_poke else None)

    # -- pushing -----------------------------------------------------------------
    def push(self, key: str, value: Any) -> None:
        if not isinstance(key, str) or not key:
            raise XComError(f"task {self.task_id!r}: an XCom key must be a non-empty string, not {key!r}")
        if key == OUTCOME_KEY:
            raise XComError(f"task {self.task_id!r}: the XCom key {key!r} is crossdock's own")
        self.pushed[key] = serialize_value(value, what=f"XCom {key!r} of task {self.task_id!r}",
                                           limit=self.value_limit)
        total = sum(len(text) for text in self.pushed.values())
        if total > MAX_TRY_VALUES_BYTES:
            raise XComError(f"task {self.task_id!r} pushed {total:,} bytes of XComs in all, over the "
                            f"{MAX_TRY_VALUES_BYTES:,} one try may report")

    # -- pulling -----------------------------------------------------------------
    def pull(self, task_ids: str | Iterable[str] | None = None, dag_id: str | None = None,
             key: str | None = XCOM_RETURN_KEY, include_prior_dates: bool = False,
             map_indexes: int | Iterable[int] | None = None, default: Any = None) -> Any:
        """Airflow's ``xcom_pull``: one id → one value (or default), a list of ids → a list."""
        if dag_id is not None and dag_id != self.dag_id:
            raise XComError(f"task {self.task_id!r} pulled from DAG {dag_id!r}: a try is handed the values "
                            f"of its own DAG run only")
        single = task_ids is None or isinstance(task_ids, str)
        wanted = None if task_ids is None else [task_ids] if isinstance(task_ids, str) else list(task_ids)
        for task_id in wanted or ():
            self._check_pullable(task_id)
        indexes = None if map_indexes is None else (
            [map_indexes] if isinstance(map_indexes, int) else list(map_indexes))
        found = self._matches(wanted, key, indexes)
        if not found and include_prior_dates:
            raise XComError(f"task {self.task_id!r} pulled with include_prior_dates=True and its run holds no "
                            f"such value; crossdock hands a try the values of its own run only")
        if single:
            if not found:
                return default
            task_id, map_index, value = found[0]
            if indexes is None and map_index >= 0:  # a mapped task: all its values, by map index
                return [item_value for item_task, _, item_value in found if item_task == task_id]
            return value
        return [value for _, _, value in found]

    def _check_pullable(self, task_id: str) -> None:
        if self.dag_task_ids and task_id not in self.dag_task_ids:
            raise XComError(f"task {self.task_id!r} pulled from task {task_id!r}, which DAG {self.dag_id!r} "
                            f"does not have")
        if task_id in self.inputs.withheld:
            raise XComError(f"the values of task {task_id!r} were not handed to task {self.task_id!r}: its "
                            f"upstream values exceed what a task command can carry; push smaller values "
                            f"(a path or URI to the data)")
        if task_id not in self.inputs.upstream and task_id != self.task_id:
            log.warning("pulled from task %r, which is not upstream of %r: crossdock hands a try only its "
                        "upstream tasks' values, so this pull finds nothing", task_id, self.task_id)

    def _matches(self, wanted: list[str] | None, key: str | None,
                 indexes: list[int] | None) -> list[tuple[str, int, Any]]:
        order = {task_id: position for position, task_id in enumerate(wanted or ())}
        found = []
        for (task_id, map_index, value_key), value in self.inputs.values.items():
            if wanted is not None and task_id not in order:
                continue
            if key is not None and value_key != key:
                continue
            if indexes is not None and map_index not in indexes:
                continue
            found.append((task_id, map_index, value))
        for value_key, text in self.pushed.items():  # a try may read back what it pushed itself
            if (wanted is None or self.task_id in order) and (key is None or value_key == key) and (
                    indexes is None or self.map_index in indexes):
                found.append((self.task_id, self.map_index, json.loads(text)))
        found.sort(key=lambda item: (order.get(item[0], 0) if wanted is not None else item[0], item[1]))
        return [(task_id, map_index, from_json_object(value)) for task_id, map_index, value in found]


# -- the report line ---------------------------------------------------------------------
def values_line(values: TryValues | None) -> str | None:
    """The runner's stderr line reporting the pushed values; None when nothing was pushed."""
    if values is None or not (values.pushed or values.outcome):
        return None
    parts = [f"{json.dumps(key)}:{text}" for key, text in values.pushed.items()]
    if values.outcome:
        parts.append(f"{json.dumps(OUTCOME_KEY)}:{json.dumps(values.outcome)}")
    body = ",".join(parts)
    return f"{VALUES_PREFIX}{{{body}}}\n"


def values_from_output(text: str | bytes | None) -> dict[str, str] | None:
    """key → XCom text from a try's output (its last values line), None when it reported none.

    The try's outcome, when it reported one, is under :data:`OUTCOME_KEY` (as JSON text too);
    :func:`split_outcome` takes it out.

    Each value is re-serialized on its own, so the scheduler stores exactly the text the
    try made, whatever channel carried it.
    """
    if not text:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    position = text.rfind(VALUES_PREFIX)
    if position < 0:
        return None
    line = text[position + len(VALUES_PREFIX):].split("\n", 1)[0]
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {str(key): json.dumps(value, separators=(",", ":"), ensure_ascii=False) for key, value in data.items()}


def split_outcome(values: dict[str, str] | None) -> tuple[dict[str, str] | None, dict[str, Any]]:
    """(the XComs, the outcome) of what a try reported; the outcome is {} for a plain success."""
    if not values or OUTCOME_KEY not in values:
        return values, {}
    values = dict(values)
    try:
        outcome = json.loads(values.pop(OUTCOME_KEY))
    except ValueError:
        outcome = {}
    return values or None, outcome if isinstance(outcome, dict) else {}
