"""The clock guard under jumps, first boot, and trusted references."""

from __future__ import annotations

import datetime as dt

from edge.rules.clock_check import judge_clock
from ledger.transfers import TimeSource

TZ = dt.timezone(dt.timedelta(hours=8))
LAST = dt.datetime(2026, 11, 30, 23, 50, tzinfo=TZ)
TEN_MIN = dt.timedelta(minutes=10)


def test_consistent_clock_is_taken() -> None:
    v = judge_clock(LAST + TEN_MIN, LAST, TEN_MIN)
    assert (v.plausible, v.now, v.source) == (True, LAST + TEN_MIN, TimeSource.NTP)


def test_clock_backwards_across_month_boundary_is_held() -> None:
    booted_1970 = dt.datetime(1970, 1, 1, tzinfo=TZ)
    v = judge_clock(booted_1970, LAST, TEN_MIN)
    assert not v.plausible
    assert v.now == LAST + TEN_MIN  # best estimate: last known + monotonic elapsed
    assert v.source is TimeSource.PERSISTED
    assert "before the last known time" in v.reason


def test_clock_jumping_forward_into_next_month_is_held() -> None:
    v = judge_clock(LAST + dt.timedelta(days=40), LAST, TEN_MIN)
    assert not v.plausible
    assert v.now == LAST + TEN_MIN
    assert "jumped" in v.reason


def test_cloud_time_wins() -> None:
    cloud = LAST + dt.timedelta(days=3)
    v = judge_clock(dt.datetime(1970, 1, 1, tzinfo=TZ), LAST, TEN_MIN, cloud_time=cloud)
    assert (v.plausible, v.now, v.source) == (True, cloud, TimeSource.CLOUD)


def test_meter_quorum_confirms_a_jump_after_a_long_power_cut() -> None:
    # Off for three days: the monotonic clock restarted, the system clock says three days later.
    later = LAST + dt.timedelta(days=3)
    meters = (later, later + dt.timedelta(seconds=40), later - dt.timedelta(seconds=70))
    v = judge_clock(later, LAST, dt.timedelta(seconds=5), meter_times=meters)
    assert (v.plausible, v.source) == (True, TimeSource.METER)
    assert v.now == later


def test_too_few_or_disagreeing_meters_are_not_trusted() -> None:
    later = LAST + dt.timedelta(days=3)
    v = judge_clock(later, LAST, dt.timedelta(seconds=5), meter_times=(later, later))
    assert not v.plausible
    scattered = (later, later + dt.timedelta(hours=5), later - dt.timedelta(days=9))
    assert not judge_clock(later, LAST, dt.timedelta(seconds=5), meter_times=scattered).plausible


def test_first_boot() -> None:
    now = dt.datetime(2026, 11, 1, tzinfo=TZ)
    assert judge_clock(now, None, None).plausible


def test_a_boot_far_ahead_of_the_last_known_time_is_held() -> None:
    # After a restart the elapsed time is unknown (None): the Pi says 2038.
    v = judge_clock(dt.datetime(2038, 1, 19, tzinfo=TZ), LAST, None)
    assert not v.plausible and v.now == LAST and v.source is TimeSource.PERSISTED
    assert "at boot" in v.reason


def test_a_boot_within_the_boot_gap_is_taken_and_the_allowance_stays_while_held() -> None:
    assert judge_clock(LAST + dt.timedelta(hours=30), LAST, None).plausible
    # Held since boot, an hour on: a clock back within the allowance releases the hold.
    back = LAST + dt.timedelta(hours=5)
    assert judge_clock(
        back, LAST, dt.timedelta(hours=1), unaccounted=dt.timedelta(days=2)
    ).plausible
    assert not judge_clock(back, LAST, dt.timedelta(hours=1)).plausible  # allowance spent


def test_first_boot_meters_a_zone_away_are_not_taken_silently() -> None:
    now = dt.datetime(2026, 11, 1, 8, tzinfo=TZ)
    utc_wall = now - dt.timedelta(hours=8)  # meters set to UTC wall time, read as +08:00
    v = judge_clock(now, None, None, meter_times=(utc_wall,) * 3)
    assert not v.plausible and v.now == now and "time zone" in v.reason
    booted_1970 = dt.datetime(1970, 1, 1, tzinfo=TZ)
    v = judge_clock(booted_1970, None, None, meter_times=(now,) * 3)
    assert (v.plausible, v.now, v.source) == (True, now, TimeSource.METER)
