"""Protection: malicious-load windows on the total and on the step (the kettle beside the
computer), debounce, overload, over-voltage, auto-reclose and lockout."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pytest

from edge.drivers.reading import Reading
from edge.rules.decisions import AlarmKind, Decided, RelayCause, RelayCommand
from edge.rules.errors import PolicyError
from edge.rules.protection import (
    METER_TRIPS,
    Load,
    LoadWindow,
    ProtectionPolicy,
    ProtectionState,
    load_of,
    protect,
    reset_lockout,
)
from tests.edge.rules.helpers import at

T0 = at(2026, 11, 1, 14)
SECOND = dt.timedelta(seconds=1)
HEATER_WINDOW = LoadWindow(100, 300, 0.96, 0.99)  # the operator's example
KETTLE_WINDOW = LoadWindow(1_000, 3_000, 0.95, 1.0)
POLICY = ProtectionPolicy(windows=(HEATER_WINDOW, KETTLE_WINDOW), debounce_readings=3)


def load(p: float, pf: float) -> tuple[float, float]:
    """(P, Q) of a load of `p` watts at power factor `pf`, inductive."""
    return p, p * math.tan(math.acos(pf))


COMPUTER = load(200, 0.70)
COMPRESSOR = load(1_500, 0.65)
KETTLE = load(2_000, 1.0)
HEATER = load(200, 0.98)


def meter(*loads: tuple[float, float], volts: float = 220.0) -> Reading:
    p = sum(x[0] for x in loads)
    q = sum(x[1] for x in loads)
    return Reading(address="M1", power_w=p, reactive_var=q, voltage_v=volts)


def feed(
    readings: list[Reading],
    policy: ProtectionPolicy = POLICY,
    state: ProtectionState | None = None,
    start: dt.datetime = T0,
    every: dt.timedelta = 10 * SECOND,
) -> list[Decided[ProtectionState]]:
    out = []
    state = state or ProtectionState()
    for i, r in enumerate(readings):
        decided = protect(start + i * every, r, state, policy)
        out.append(decided)
        state = decided.state
    return out


def trips(results: list[Decided[ProtectionState]]) -> list[tuple[int, RelayCause]]:
    return [
        (i, action.cause)
        for i, d in enumerate(results)
        for action in d.decisions.relays
        if action.command is RelayCommand.TRIP
    ]


def test_windows_judge_power_and_power_factor() -> None:
    assert HEATER_WINDOW.matches(Load(*HEATER))
    assert not HEATER_WINDOW.matches(Load(*COMPUTER))  # 200 W but PF 0.70
    assert not HEATER_WINDOW.matches(Load(*load(400, 0.98)))


def test_heater_alone_trips_after_debounce_and_computer_alone_never() -> None:
    results = feed([meter(HEATER)] * 4)
    assert trips(results) == [(2, RelayCause.MALICIOUS_LOAD)]
    [alarm] = results[2].decisions.alarms
    assert alarm.kind is AlarmKind.MALICIOUS_LOAD
    assert trips(feed([meter(COMPUTER)] * 10)) == []


def test_kettle_beside_a_running_computer_is_caught_on_the_step() -> None:
    before = [meter(COMPUTER)] * 3
    step_only = ProtectionPolicy(windows=POLICY.windows, judge_total=False)
    results = feed([*before, *[meter(COMPUTER, KETTLE)] * 3], step_only)
    assert trips(results) == [(5, RelayCause.MALICIOUS_LOAD)]
    assert "step 2000 W at PF 1.00" in results[5].decisions.relays[0].reason


def test_kettle_beside_a_compressor_escapes_the_total_but_not_the_step() -> None:
    # 3.7 kW at PF 0.88 in total: no window matches it; the 2 kW step at PF 1.0 does.
    parts = (COMPUTER, COMPRESSOR, KETTLE)
    total = Load(sum(p for p, _ in parts), sum(q for _, q in parts))
    assert total.pf == pytest.approx(0.884, abs=0.001)
    assert not any(w.matches(total) for w in POLICY.windows)
    readings = [meter(COMPUTER, COMPRESSOR)] * 3 + [meter(COMPUTER, COMPRESSOR, KETTLE)] * 3
    total_only = ProtectionPolicy(windows=POLICY.windows, judge_step=False)
    assert trips(feed(readings, total_only)) == []
    assert trips(feed(readings)) == [(5, RelayCause.MALICIOUS_LOAD)]


def test_a_passing_spike_is_debounced_away() -> None:
    readings = [meter(COMPUTER), meter(COMPUTER, KETTLE), meter(COMPUTER, KETTLE), meter(COMPUTER)]
    results = feed(readings * 3)
    assert trips(results) == []
    assert results[-1].state.suspicion is None


def test_debounce_by_hold_time() -> None:
    policy = ProtectionPolicy(
        windows=POLICY.windows, debounce_readings=None, debounce_hold=dt.timedelta(seconds=25)
    )
    results = feed([meter(HEATER)] * 5, policy)
    assert trips(results) == [(3, RelayCause.MALICIOUS_LOAD)]  # 30 s after the first match


def test_auto_reclose_then_a_kettle_still_plugged_in_trips_again_until_lockout() -> None:
    policy = ProtectionPolicy(
        windows=POLICY.windows,
        reclose_after=dt.timedelta(minutes=5),
        lockout_trips=2,
        lockout_window=dt.timedelta(hours=1),
    )
    state = feed([meter(HEATER)] * 3, policy)[-1].state
    assert state.tripped is RelayCause.MALICIOUS_LOAD
    tripped_at = T0 + 20 * SECOND
    # The relay is open: the meter sees nothing; too early to reclose.
    waiting = protect(tripped_at + dt.timedelta(minutes=4), meter(), state, policy)
    assert waiting.decisions.empty
    closed = protect(tripped_at + dt.timedelta(minutes=5), meter(), state, policy)
    [action] = closed.decisions.relays
    assert (action.command, action.cause) == (RelayCommand.CLOSE, RelayCause.MALICIOUS_LOAD)
    assert closed.state.last == Load(0.0, 0.0)
    # The heater comes back on with the power: judged as a step from nothing, tripped again,
    # and the second trip within the hour locks the meter out.
    again = feed([meter(HEATER)] * 3, policy, closed.state, tripped_at + dt.timedelta(minutes=6))
    assert trips(again) == [(2, RelayCause.MALICIOUS_LOAD)]
    locked = again[-1].state
    assert locked.locked_out
    assert AlarmKind.LOCKOUT in [a.kind for a in again[-1].decisions.alarms]
    later = protect(tripped_at + dt.timedelta(hours=3), meter(), locked, policy)
    assert later.decisions.empty  # no auto-reclose while locked out
    reset = reset_lockout("M1", locked)
    assert [a.command for a in reset.decisions.relays] == [RelayCommand.CLOSE]
    assert reset.state == ProtectionState(last=Load(0.0, 0.0))


def test_trips_outside_the_lockout_window_do_not_add_up() -> None:
    policy = ProtectionPolicy(
        windows=POLICY.windows,
        reclose_after=dt.timedelta(minutes=1),
        lockout_trips=2,
        lockout_window=dt.timedelta(minutes=30),
    )
    state = ProtectionState()
    for hour in range(3):
        start = T0 + dt.timedelta(hours=hour)
        state = feed([meter(HEATER)] * 3, policy, state, start)[-1].state
        assert state.tripped is RelayCause.MALICIOUS_LOAD and not state.locked_out
        state = protect(start + dt.timedelta(minutes=2), meter(), state, policy).state
        assert state.tripped is None


def test_overload_after_its_hold_time() -> None:
    policy = ProtectionPolicy(overload_w=5_000, overload_hold=dt.timedelta(seconds=30))
    big = load(6_000, 0.8)
    results = feed([meter(big), meter(big), meter(load(4_000, 0.8)), *[meter(big)] * 4], policy)
    assert trips(results) == [(6, RelayCause.OVERLOAD)]
    assert results[6].decisions.alarms[0].kind is AlarmKind.OVERLOAD


def test_over_voltage_trips_at_once_and_recloses_only_when_the_voltage_is_back() -> None:
    policy = ProtectionPolicy(over_voltage_v=264, reclose_after=dt.timedelta(minutes=1))
    [tripped] = feed([meter(COMPUTER, volts=270)], policy)
    assert trips([tripped]) == [(0, RelayCause.OVER_VOLTAGE)]
    still_high = protect(T0 + dt.timedelta(minutes=2), meter(volts=268), tripped.state, policy)
    assert still_high.decisions.empty
    back = protect(T0 + dt.timedelta(minutes=3), meter(volts=230), tripped.state, policy)
    assert [a.command for a in back.decisions.relays] == [RelayCommand.CLOSE]
    # Over-voltage is the grid's doing: it never counts towards a lockout.
    assert back.state.recent_trips == ()


def power_only(*loads: tuple[float, float]) -> Reading:
    """What a `power` block reads: no voltage."""
    return Reading(
        address="M1", power_w=sum(x[0] for x in loads), reactive_var=sum(x[1] for x in loads)
    )


def test_a_reading_without_a_quantity_leaves_its_judgement_standing() -> None:
    policy = ProtectionPolicy(
        over_voltage_v=264,
        over_voltage_hold=dt.timedelta(seconds=30),
        overload_w=5_000,
        overload_hold=dt.timedelta(seconds=30),
    )
    # The billing read sees 270 V, a power block (no voltage) follows, then 270 V again:
    # the over-voltage has held for 30 s, the block did not reset it.
    results = feed(
        [meter(COMPUTER, volts=270), power_only(COMPUTER), meter(COMPUTER, volts=270)],
        policy,
        every=15 * SECOND,
    )
    assert trips(results) == [(2, RelayCause.OVER_VOLTAGE)]
    # A reading without power (a clock block) leaves the overload timer running.
    big = load(6_000, 0.8)
    clock_only = Reading(address="M1", voltage_v=220.0)
    results = feed([meter(big), clock_only, meter(big)], policy, every=15 * SECOND)
    assert trips(results) == [(2, RelayCause.OVERLOAD)]


def test_a_reading_without_a_load_keeps_the_suspicion_and_its_baseline() -> None:
    no_load = Reading(address="M1", voltage_v=220.0)
    results = feed([meter(COMPUTER), meter(COMPUTER, KETTLE), no_load, meter(COMPUTER, KETTLE)])
    assert results[2].state.suspicion == results[1].state.suspicion
    assert results[3].state.suspicion is not None and results[3].state.suspicion.count == 2


def test_reactive_power_from_the_power_factor_when_the_meter_has_no_var() -> None:
    r = Reading(address="M1", power_w=200.0, power_factor=0.7)
    derived = load_of(r)
    assert derived is not None
    assert derived.pf == pytest.approx(0.7)
    assert load_of(Reading(address="M1", power_w=200.0)) is None
    assert load_of(Reading(address="M1")) is None


def test_policy_validation() -> None:
    with pytest.raises(PolicyError):
        ProtectionPolicy(debounce_readings=None, debounce_hold=None)
    with pytest.raises(PolicyError):
        LoadWindow(300, 100, 0.9, 1.0)


def counted(trips_so_far: int, *loads: tuple[float, float]) -> Reading:
    """A reading that carries the meter's own malicious-load trip counter."""
    return dataclasses.replace(meter(*loads), counters=((METER_TRIPS, trips_so_far),))


def test_a_trip_the_meter_made_itself_is_a_malicious_load_trip() -> None:
    # First count seen: remembered only (the meter tripped before anyone was watching).
    results = feed([counted(4, COMPUTER), counted(4, COMPUTER), counted(5), counted(5)])
    assert trips(results) == [(2, RelayCause.MALICIOUS_LOAD)]
    (alarm,) = results[2].decisions.alarms
    assert alarm.kind is AlarmKind.MALICIOUS_LOAD and "by the meter itself" in alarm.message
    assert "4 → 5" in alarm.message
    assert results[2].state.recent_trips == (T0 + 20 * SECOND,)  # counts towards the lockout
    assert [r.state.meter_trips for r in results] == [4, 4, 5, 5]


def test_meter_trips_recloses_locks_out_and_never_double_counts() -> None:
    policy = ProtectionPolicy(
        windows=(KETTLE_WINDOW,), reclose_after=dt.timedelta(seconds=30), lockout_trips=2
    )
    readings = [counted(0), counted(1), counted(2), counted(2), counted(2), counted(3), counted(3)]
    results = feed(readings, policy=policy)
    # Trip at 1; the count going up while the relay is held (2) is only remembered; reclose at
    # 4 (30 s after); the next count is the second load trip within the hour: locked out.
    assert trips(results) == [(1, RelayCause.MALICIOUS_LOAD), (5, RelayCause.MALICIOUS_LOAD)]
    closes = [
        i for i, d in enumerate(results) for a in d.decisions.relays if a.command.value == "close"
    ]
    assert closes == [4]
    assert results[5].state.locked_out and results[6].state.meter_trips == 3
    # A counter that went down (a new meter at this address) is a new baseline, not a trip.
    again = feed([counted(7), counted(0), counted(1)], policy=policy)
    assert trips(again) == [(2, RelayCause.MALICIOUS_LOAD)]
    assert reset_lockout("M1", results[6].state).state.meter_trips == 3
