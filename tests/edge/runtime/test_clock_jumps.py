"""The system clock jumps forward and backward across a month boundary while billing goes on.

The simulated building follows the true time; only the box's system clock is wrong (a bad NTP
answer, a dead RTC battery). Expected: an alarm once per episode, time-driven actions held
(no subsidy issued or expired on the jumped clock, no low-balance check), consumption billed
throughout with the estimated time (`time_source` persisted), and the subsidy of each period
issued exactly once, on the true day.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from demo.site import DemoSite
from edge.runtime.events import RuntimeKind
from edge.site import load_site
from edge.store import Category
from ledger.invariants import ledger_violations
from ledger.transfers import Code, TimeSource
from tests.edge.runtime.conftest import ZONE, booted_at, transfers_of

pytestmark = pytest.mark.slow  # a demo site billed across a month boundary, clocks jumping

HOUR = dt.timedelta(hours=1)
START = dt.datetime(2026, 11, 29, 12, 0, tzinfo=ZONE)


def test_clock_jumps_hold_time_driven_actions_and_never_double_a_subsidy(
    small_site: DemoSite,
) -> None:
    booted, clock = booted_at(load_site(small_site.site_toml), START)
    runtime = booted.runtime
    store = runtime.store

    def until(moment: dt.datetime) -> list[bool]:
        plausible = []
        while clock.true_now() < moment:
            plausible.append(runtime.run_cycle().plausible)
            clock.advance(HOUR)
        return plausible

    def subsidy_periods() -> Counter[str]:
        return Counter(
            str(t.refs["period"]) for t in transfers_of(store) if t.code is Code.SUBSIDY_ISSUE
        )

    try:
        assert all(until(dt.datetime(2026, 11, 30, 12, 0, tzinfo=ZONE)))
        accounts = len(runtime.site.accounts)
        assert subsidy_periods() == {"2026-11": accounts}

        # Forward: the system clock says 5 December; the true time is still 30 November.
        clock.jump(dt.timedelta(days=5))
        seq = store.chain.seq
        assert not any(until(dt.datetime(2026, 11, 30, 18, 0, tzinfo=ZONE)))
        assert subsidy_periods() == {"2026-11": accounts}, "December's subsidy came early"
        billed = [t for t in transfers_of(store)[seq:] if t.code is Code.CONSUME]
        assert billed, "consumption billing must go on while the clock is held"
        assert {t.time_source for t in billed} == {TimeSource.PERSISTED}
        assert all(t.time.startswith("2026-11-30") for t in billed)  # the estimate, not Dec 5
        assert not [t for t in transfers_of(store) if t.code is Code.SUBSIDY_EXPIRE]

        clock.jump(dt.timedelta(days=-5))  # NTP fixed it
        assert all(until(dt.datetime(2026, 12, 1, 3, 0, tzinfo=ZONE)))
        assert subsidy_periods() == {"2026-11": accounts, "2026-12": accounts}

        # Backward, across the month boundary: the system clock says 29 November again.
        clock.jump(dt.timedelta(days=-2))
        seq = store.chain.seq
        assert not any(until(dt.datetime(2026, 12, 1, 7, 0, tzinfo=ZONE)))
        later = transfers_of(store)[seq:]
        assert {t.code for t in later} <= {Code.CONSUME}
        assert all(t.time.startswith("2026-12-01") for t in later)

        clock.jump(dt.timedelta(days=2))
        assert all(until(dt.datetime(2026, 12, 1, 11, 0, tzinfo=ZONE)))
        assert subsidy_periods() == {"2026-11": accounts, "2026-12": accounts}
        issues = [t for t in transfers_of(store) if t.code is Code.SUBSIDY_ISSUE]
        assert {t.time for t in issues} == {
            "2026-11-01T00:00:00+08:00",  # the catch-up at first boot, stamped with its due time
            "2026-12-01T00:00:00+08:00",
        }
        assert ledger_violations(transfers_of(store), store.book.balances()) == []

        kinds = Counter(e.event.kind for e in store.events())
        assert kinds[RuntimeKind.CLOCK_IMPLAUSIBLE.value] == 2  # one alarm per episode
        assert kinds[RuntimeKind.CLOCK_PLAUSIBLE.value] == 2
        alarms = store.events(category=Category.ALARM)
        jumped = [e for e in alarms if e.event.kind == RuntimeKind.CLOCK_IMPLAUSIBLE.value]
        assert "jumped" in str(jumped[0].event.detail["message"])
        assert "before the last known time" in str(jumped[1].event.detail["message"])
        # The low-balance check ran at 09:00 on true days only (not on the jumped clock).
        low = {
            e.event.time.astimezone(ZONE).date() for e in alarms if e.event.kind == "low_balance"
        }
        assert low <= {dt.date(2026, 11, 29), dt.date(2026, 11, 30), dt.date(2026, 12, 1)}
    finally:
        booted.close()


def test_meter_clocks_correct_a_jumped_system_clock(small_site: DemoSite) -> None:
    """With the meters' clocks read (a DL/T 645 `clock` block), a jumped system clock is not
    just held: the median meter clock is taken, and billing goes on at the true time."""
    booted, clock = booted_at(load_site(small_site.site_toml), START)
    runtime = booted.runtime
    try:
        runtime.run_cycle()
        clock.advance(HOUR)
        clock.jump(dt.timedelta(days=5))
        assert not runtime.run_cycle().plausible  # no second opinion yet: held
        clock.advance(HOUR)
        assert runtime.check_meter_clocks() >= 3
        report = runtime.run_cycle()
        assert report.plausible
        assert "median meter clock" in report.clock_reason
        assert abs(report.now - clock.true_now()) < dt.timedelta(minutes=5)
        last = [t for t in transfers_of(runtime.store) if t.code is Code.CONSUME][-1]
        assert last.time_source is TimeSource.METER
        assert last.time.startswith(clock.true_now().date().isoformat())
    finally:
        booted.close()
