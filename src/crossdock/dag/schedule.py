"""What a DAG's ``schedule`` may be, and the one string form the scheduler reads.

A schedule is ``None`` (runs only when triggered), a preset such as ``"@daily"``, a
cron expression, or a :class:`datetime.timedelta`. The serialized form is a string so
it fits one database column: presets and cron text as written, a timedelta as
``"timedelta:<seconds>"``. ``croniter`` is imported only when a cron expression has to
be checked, because it costs more to import than the rest of the
authoring API together and most DAG files never need it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Union

from crossdock.dag.exceptions import DagDefinitionError

#: Presets and the cron expression each stands for; ``@once`` has none (one run only).
PRESETS: dict[str, str | None] = {
    "@once": None,
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

#: Prefix of a serialized timedelta schedule; the rest is a number of seconds.
TIMEDELTA_PREFIX = "timedelta:"

#: Fields of a cron expression crossdock accepts (minute hour day month weekday).
CRON_FIELDS = 5

Schedule = Union[str, timedelta, None]


def normalize_schedule(schedule: object, *, dag_id: str) -> Schedule:
    """Check a user's schedule and return it in canonical form (stripped cron text).

    Raises :class:`DagDefinitionError` naming the DAG and the bad value.
    """
    if schedule is None:
        return None
    if isinstance(schedule, timedelta):
        if schedule <= timedelta(0):
            raise DagDefinitionError(f"DAG {dag_id!r}: schedule {schedule!r} must be a positive duration")
        return schedule
    if not isinstance(schedule, str):
        raise DagDefinitionError(
            f"DAG {dag_id!r}: schedule must be None, a cron string, a preset such as '@daily' "
            f"or a timedelta, not {type(schedule).__name__} {schedule!r}")
    text = " ".join(schedule.split())
    if text in PRESETS:
        return text
    if text.startswith("@"):
        presets = ", ".join(PRESETS)
        raise DagDefinitionError(
            f"DAG {dag_id!r}: schedule {schedule!r} is not a known preset (known: {presets})")
    if not is_valid_cron(text):
        raise DagDefinitionError(
            f"DAG {dag_id!r}: schedule {schedule!r} is not a valid cron expression "
            f"(expected {CRON_FIELDS} fields: minute hour day-of-month month day-of-week)")
    return text


def is_valid_cron(text: str) -> bool:
    """True for a five-field cron expression that croniter can evaluate."""
    if len(text.split()) != CRON_FIELDS:
        return False
    from croniter import croniter

    return bool(croniter.is_valid(text))


def serialize_schedule(schedule: Schedule) -> str | None:
    """The schedule as stored: cron/preset text, ``timedelta:<seconds>`` or None."""
    if schedule is None or isinstance(schedule, str):
        return schedule
    seconds = schedule.total_seconds()
    number = int(seconds) if seconds == int(seconds) else seconds
    return f"{TIMEDELTA_PREFIX}{number}"


def deserialize_schedule(text: str | None) -> Schedule:
    """Inverse of :func:`serialize_schedule`."""
    if text is None or not text.startswith(TIMEDELTA_PREFIX):
        return text
    return timedelta(seconds=float(text[len(TIMEDELTA_PREFIX):]))

