"""The two runtime hooks cloud commands use: an operator's relay override (a cause of its own
that only an operator's close releases) and the clock guard trusting the cloud's time."""

from __future__ import annotations

import dataclasses
import datetime as dt

from edge.rules.decisions import AlarmKind, RelayCause, RelayCommand
from edge.rules.protection import ProtectionState
from edge.runtime.clock import ClockGuard, ManualClock
from edge.runtime.operator import operator_relay
from edge.runtime.state import MeterRuntime, RelayHold
from ledger.transfers import TimeSource
from tests.edge.runtime.conftest import START, ZONE

METER = "202611000001"


def _held(*causes: RelayCause) -> MeterRuntime:
    return MeterRuntime(relay=RelayHold(held=frozenset(causes)))


def test_an_operator_trip_opens_a_closed_relay_and_adds_its_cause() -> None:
    done = operator_relay(METER, _held(), RelayCommand.TRIP, "operator trip")
    assert [(c.command, c.cause) for c in done.commands] == [
        (RelayCommand.TRIP, RelayCause.OPERATOR)
    ]
    assert done.state.relay.held == {RelayCause.OPERATOR}


def test_an_operator_trip_of_a_relay_already_open_only_adds_its_cause() -> None:
    done = operator_relay(METER, _held(RelayCause.ARREARS), RelayCommand.TRIP, "trip")
    assert done.commands == ()
    assert done.still_held == {RelayCause.ARREARS, RelayCause.OPERATOR}


def test_an_operator_close_releases_only_what_an_operator_and_protection_hold() -> None:
    alone = operator_relay(METER, _held(RelayCause.OPERATOR), RelayCommand.CLOSE, "close")
    assert [c.command for c in alone.commands] == [RelayCommand.CLOSE]
    assert alone.still_held == frozenset()
    in_debt = _held(RelayCause.OPERATOR, RelayCause.ARREARS)
    kept = operator_relay(METER, in_debt, RelayCommand.CLOSE, "close")
    assert kept.commands == () and kept.still_held == {RelayCause.ARREARS}


def test_an_operator_close_clears_a_lockout_and_closes() -> None:
    now = START
    locked = dataclasses.replace(
        _held(RelayCause.OVERLOAD),
        protection=ProtectionState(
            tripped=RelayCause.OVERLOAD,
            tripped_at=now,
            recent_trips=(now, now, now),
            locked_out=True,
        ),
    )
    done = operator_relay(METER, locked, RelayCommand.CLOSE, "close")
    assert [c.command for c in done.commands] == [RelayCommand.CLOSE]
    assert not done.state.protection.locked_out and done.state.protection.tripped is None
    assert done.state.protection.recent_trips == ()
    assert [a.kind for a in done.alarms] == [AlarmKind.RECLOSE]


def test_the_guard_trusts_the_cloud_until_the_system_clock_agrees_again() -> None:
    clock = ManualClock(START)
    guard = ClockGuard(clock, ZONE)
    verdict, mono = guard.judge()
    guard.known(verdict.now, mono)
    clock.advance(dt.timedelta(minutes=15))
    clock.jump(dt.timedelta(days=-400))  # the RTC lost its battery
    assert not guard.judge()[0].plausible
    guard.cloud_time(clock.true_now())
    clock.advance(dt.timedelta(minutes=10))
    verdict, _ = guard.judge()
    assert verdict.plausible and verdict.source is TimeSource.CLOUD
    assert verdict.now == clock.true_now()  # carried forward by the monotonic count
    clock.jump(dt.timedelta(days=400))  # NTP is back: the system clock agrees again
    verdict, _ = guard.judge()
    assert verdict.source is TimeSource.SIMULATED and not guard.trusting_cloud
