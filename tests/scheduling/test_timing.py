"""Schedule timing, pure: cron and interval fire times, time zones, and the misfire policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from noetl.errors import UsageError
from noetl.server import scheduler
from noetl.store.schedules import Schedule

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def sched(*, cron: str | None = None, interval: float | None = None, misfire: str = "run_once",
          next_run_at: datetime = T0, tz: str = "UTC", limit: int = 10) -> Schedule:  # fmt: skip
    return Schedule("s", "pb", cron, interval, tz, {}, misfire, limit, False, next_run_at)


def test_cron_every_five_minutes() -> None:
    assert scheduler.next_after("*/5 * * * *", None, "UTC", T0 + timedelta(minutes=3)) == T0 + timedelta(
        minutes=5
    )


def test_cron_reads_its_time_zone() -> None:
    # 09:00 in Berlin (UTC+1 in March before DST) is 08:00 UTC
    found = scheduler.next_after("0 9 * * *", None, "Europe/Berlin", datetime(2026, 3, 1, 7, tzinfo=UTC))
    assert found == datetime(2026, 3, 1, 8, tzinfo=UTC)


def test_six_fields_give_seconds() -> None:
    assert scheduler.next_after("* * * * * */2", None, "UTC", T0) == T0 + timedelta(seconds=2)


def test_interval() -> None:
    assert scheduler.next_after(None, 30.0, "UTC", T0) == T0 + timedelta(seconds=30)


def test_bad_cron_and_zone_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="invalid cron expression"):
        scheduler.check_cron("every minute")
    with pytest.raises(UsageError, match="unknown timezone"):
        scheduler.zone("Mars/Olympus")


def test_an_on_time_run() -> None:
    plan = scheduler.plan(sched(interval=60), T0 + timedelta(seconds=1))
    assert plan.runs == [T0]
    assert plan.next_run_at == T0 + timedelta(seconds=60)


def test_not_due_yet() -> None:
    plan = scheduler.plan(sched(interval=60), T0 - timedelta(seconds=1))
    assert plan.runs == []
    assert plan.next_run_at == T0


DOWN = T0 + timedelta(minutes=10, seconds=5)  # ten one-minute runs missed, the 11th on time


def test_catch_up_runs_each_missed_run_up_to_the_limit() -> None:
    plan = scheduler.plan(sched(interval=60, misfire="catch_up", limit=4), DOWN)
    assert plan.runs == [T0 + timedelta(minutes=m) for m in (7, 8, 9, 10)]
    assert plan.next_run_at == T0 + timedelta(minutes=11)


def test_run_once_runs_one_for_all_missed() -> None:
    plan = scheduler.plan(sched(interval=60, misfire="run_once"), DOWN)
    assert plan.runs == [T0 + timedelta(minutes=10)]
    assert plan.next_run_at == T0 + timedelta(minutes=11)


def test_skip_runs_only_what_is_on_time() -> None:
    assert scheduler.plan(sched(interval=60, misfire="skip"), DOWN).runs == [T0 + timedelta(minutes=10)]
    late = scheduler.plan(sched(interval=60, misfire="skip"), T0 + timedelta(minutes=10, seconds=45))
    assert late.runs == []
    assert late.next_run_at == T0 + timedelta(minutes=11)


def test_cron_catch_up_after_a_day_of_downtime() -> None:
    plan = scheduler.plan(sched(cron="0 * * * *", misfire="catch_up", limit=3), T0 + timedelta(hours=24))
    assert plan.runs == [T0 + timedelta(hours=h) for h in (22, 23, 24)]
    assert plan.next_run_at == T0 + timedelta(hours=25)
