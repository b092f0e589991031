"""When a scheduled DAG runs next: cron expressions, presets and fixed intervals.

A scheduled run covers a data interval ``[start, end)`` and is created once ``end`` has
passed; its logical date is the interval's start, as in Airflow.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from croniter import croniter

from crossdock.dag.schedule import PRESETS, TIMEDELTA_PREFIX

ONCE = "@once"


class DataInterval(NamedTuple):
    start: datetime
    end: datetime


def _cron(schedule: str) -> str:
    return PRESETS.get(schedule) or schedule


def _following(schedule: str, moment: datetime) -> datetime:
    """The first schedule point strictly after ``moment``."""
    if schedule.startswith(TIMEDELTA_PREFIX):
        raise ValueError("fixed intervals have no calendar points")
    return croniter(_cron(schedule), moment).get_next(datetime)


def _preceding_or_equal(schedule: str, moment: datetime) -> datetime:
    """The last schedule point at or before ``moment``."""
    itr = croniter(_cron(schedule), moment + timedelta(seconds=1))
    return itr.get_prev(datetime)


def next_data_interval(*, schedule: str | None, start_date: datetime | None,
                       last_interval_end: datetime | None, catchup: bool,
                       now: datetime, had_once_run: bool = False) -> DataInterval | None:
    """The next interval to run, or None when nothing is due yet (or ever).

    :param last_interval_end: end of the newest scheduled run so far (None before the first).
    :param catchup: when False, skip intervals that ended before the newest one due.
    """
    if schedule is None or start_date is None:
        return None
    start_date = start_date.astimezone(timezone.utc)
    if schedule == ONCE:
        if had_once_run or start_date > now:
            return None
        return DataInterval(start_date, start_date)
    if schedule.startswith(TIMEDELTA_PREFIX):
        step = timedelta(seconds=float(schedule[len(TIMEDELTA_PREFIX):]))
        begin = last_interval_end or start_date
        if not catchup:
            behind = (now - begin) // step
            if behind >= 2:
                begin = begin + step * (behind - 1)
        end = begin + step
        return DataInterval(begin, end) if end <= now else None
    first = _preceding_or_equal(schedule, start_date)
    if first < start_date:
        first = _following(schedule, start_date)
    begin = last_interval_end or first
    if not catchup:
        latest_end = _preceding_or_equal(schedule, now)
        if latest_end > begin:
            latest_begin = _preceding_or_equal(schedule, latest_end - timedelta(seconds=1))
            begin = max(begin, latest_begin)
    end = _following(schedule, begin)
    return DataInterval(begin, end) if end <= now else None


def data_intervals_between(*, schedule: str | None, start: datetime, end: datetime,
                           limit: int) -> list[DataInterval]:
    """Every interval of ``schedule`` whose logical date (its start) lies in ``[start, end]``,
    oldest first (a backfill's runs); at most ``limit`` + 1, so a caller can tell it was cut.

    Empty for a DAG without a regular schedule (None or ``@once``).
    """
    if schedule is None or schedule == ONCE:
        return []
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    intervals: list[DataInterval] = []
    if schedule.startswith(TIMEDELTA_PREFIX):
        step = timedelta(seconds=float(schedule[len(TIMEDELTA_PREFIX):]))
        begin = start
        while begin <= end and len(intervals) <= limit:
            intervals.append(DataInterval(begin, begin + step))
            begin += step
        return intervals
    begin = _preceding_or_equal(schedule, start).replace(fold=0)
    if begin < start:
        begin = _following(schedule, start)
    while begin <= end and len(intervals) <= limit:
        following = _following(schedule, begin)
        intervals.append(DataInterval(begin, following))
        begin = following
    return intervals
