"""When scheduled DAG runs are due: cron, presets, fixed intervals, catchup."""

from datetime import datetime, timedelta, timezone

from crossdock.scheduler.timetable import next_data_interval

UTC = timezone.utc
START = datetime(2026, 1, 1, tzinfo=UTC)


def test_first_daily_interval_is_due_only_after_it_ends():
    before_end = datetime(2026, 1, 1, 23, 59, tzinfo=UTC)
    assert next_data_interval(schedule="@daily", start_date=START, last_interval_end=None,
                              catchup=True, now=before_end) is None
    interval = next_data_interval(schedule="@daily", start_date=START, last_interval_end=None,
                                  catchup=True, now=datetime(2026, 1, 2, 0, 1, tzinfo=UTC))
    assert interval == (START, datetime(2026, 1, 2, tzinfo=UTC))


def test_catchup_walks_every_interval_and_no_catchup_jumps_to_the_latest():
    now = datetime(2026, 1, 10, 12, tzinfo=UTC)
    first = next_data_interval(schedule="0 0 * * *", start_date=START, last_interval_end=None,
                               catchup=True, now=now)
    second = next_data_interval(schedule="0 0 * * *", start_date=START, last_interval_end=first.end,
                                catchup=True, now=now)
    assert first.start == START and second.start == first.end
    latest = next_data_interval(schedule="0 0 * * *", start_date=START, last_interval_end=None,
                                catchup=False, now=now)
    assert latest == (datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC))
    assert next_data_interval(schedule="0 0 * * *", start_date=START, last_interval_end=latest.end,
                              catchup=False, now=now) is None


def test_once_runs_a_single_time_and_none_never():
    now = datetime(2026, 2, 1, tzinfo=UTC)
    assert next_data_interval(schedule="@once", start_date=START, last_interval_end=None, catchup=False,
                              now=now).start == START
    assert next_data_interval(schedule="@once", start_date=START, last_interval_end=None, catchup=False,
                              now=now, had_once_run=True) is None
    assert next_data_interval(schedule=None, start_date=START, last_interval_end=None, catchup=False,
                              now=now) is None


def test_fixed_interval_schedule():
    now = START + timedelta(minutes=95)
    interval = next_data_interval(schedule="timedelta:1800", start_date=START, last_interval_end=None,
                                  catchup=False, now=now)
    assert interval.end - interval.start == timedelta(minutes=30)
    assert interval.end <= now and now - interval.end < timedelta(minutes=30)
