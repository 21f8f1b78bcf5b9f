"""Protection: malicious-load, overload and over-voltage trips, with debounce, auto-reclose and
lockout. One meter at a time; state in, new state and decisions out.

**Malicious load** (恶性负载: heaters, kettles, rice cookers where the lease forbids them) is
recognised by operator-defined windows of active power and power factor, e.g. 100–300 W at PF
0.96–0.99 trips while a 200 W computer at PF 0.70 does not. A reading matches when either

- the *total* load (P, PF) falls in a window, or
- the *step* does: the load that came on since just before the suspicion began, ΔP and ΔQ
  against that baseline, with its own PF = ΔP / √(ΔP² + ΔQ²) and ΔP > 0. A 2 kW kettle
  switched on beside a running computer and a compressor gives a total that no window
  matches (too big, poor PF), but its step is 2 kW at PF ≈ 1.

Reactive power comes from the meter when it reports it, else from P and PF (taken inductive).

**Debounce.** A suspicion starts at the first matching reading and trips after
`debounce_readings` consecutive matches or once it has held for `debounce_hold`, whichever
comes first (either may be None, not both). One reading that matches nothing clears it. The
step baseline is frozen while the suspicion lasts, so the next readings still see the kettle
as a step rather than as "no change since the last reading".

**Overload**: P above `overload_w` for `overload_hold`. **Over-voltage**: V above
`over_voltage_v` for `over_voltage_hold` (0: at once).

**Reclose and lockout.** A tripped relay closes again `reclose_after` the trip (None: never by
itself); after an over-voltage trip only once the voltage is back at or below the limit. The
`lockout_trips`-th load trip (malicious or overload; over-voltage is the grid's doing) within
`lockout_window` locks the meter out: no auto-reclose until an operator calls `reset_lockout`.
On closing, the baseline is zero load, so whatever is still plugged in is judged again as a
step, and a kettle left on trips again (and counts towards the lockout).

**Partial readings.** A reading that lacks a quantity says nothing about it: a `power` block
without the voltage leaves the over-voltage timer where it was, a reading without power (or
without any way to know reactive power) leaves the overload timer, the suspicion and the step
baseline. So a fast block and the billing read can feed the rule in turn.

**Trips the meter made itself.** A meter whose model judges malicious load itself (its window
written by the runtime, `edge.runtime.meter_windows`) trips its own relay within seconds and
counts it; a reading that carries that counter (`METER_TRIPS`) and shows it grown since the
last one is a malicious-load trip like the rule's own: the relay is held open, the trip counts
towards the lockout and recloses after `reclose_after`. (Without this the runtime would see an
open relay the rules want closed and close it again at once.) The first count seen, or one
that went down (a new meter), is only remembered.

While a clock steps backwards, a reclose waits (elapsed time since the trip is negative):
protection errs on the side of the relay staying open.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass

from edge.drivers.reading import Reading
from edge.rules.decisions import (
    Alarm,
    AlarmKind,
    Decided,
    Decisions,
    RelayAction,
    RelayCause,
    RelayCommand,
    Severity,
)
from edge.rules.errors import PolicyError
from edge.rules.times import require_aware

_ALARM_OF = {
    RelayCause.MALICIOUS_LOAD: AlarmKind.MALICIOUS_LOAD,
    RelayCause.OVERLOAD: AlarmKind.OVERLOAD,
    RelayCause.OVER_VOLTAGE: AlarmKind.OVER_VOLTAGE,
}
_COUNTS_FOR_LOCKOUT = frozenset({RelayCause.MALICIOUS_LOAD, RelayCause.OVERLOAD})
# The `Reading.counters` entry of a meter's own malicious-load trips (the DL/T 645 driver names
# counters after its items: `edge.drivers.dlt645_items`, `malicious_load_trips`).
METER_TRIPS = "malicious_load_trips"


@dataclass(frozen=True, slots=True)
class LoadWindow:
    """Loads from `min_w` to `max_w` watts at a PF from `min_pf` to `max_pf` are malicious."""

    min_w: float
    max_w: float
    min_pf: float
    max_pf: float

    def __post_init__(self) -> None:
        if not (0 <= self.min_w <= self.max_w and 0 <= self.min_pf <= self.max_pf <= 1):
            raise PolicyError(f"bad load window {self}")

    def matches(self, load: Load) -> bool:
        return self.min_w <= load.p <= self.max_w and self.min_pf <= load.pf <= self.max_pf


@dataclass(frozen=True, slots=True)
class Load:
    """Active power `p` (W) and reactive power `q` (var): a load, or a step between loads."""

    p: float
    q: float

    @property
    def pf(self) -> float:
        apparent = math.hypot(self.p, self.q)
        return self.p / apparent if apparent else 0.0

    def minus(self, other: Load) -> Load:
        return Load(self.p - other.p, self.q - other.q)


NO_LOAD = Load(0.0, 0.0)


@dataclass(frozen=True, slots=True)
class ProtectionPolicy:
    windows: tuple[LoadWindow, ...] = ()
    judge_total: bool = True
    judge_step: bool = True
    debounce_readings: int | None = 3
    debounce_hold: dt.timedelta | None = None
    overload_w: float | None = None
    overload_hold: dt.timedelta = dt.timedelta(seconds=30)
    over_voltage_v: float | None = None
    over_voltage_hold: dt.timedelta = dt.timedelta(0)
    reclose_after: dt.timedelta | None = dt.timedelta(minutes=5)
    lockout_trips: int = 3
    lockout_window: dt.timedelta = dt.timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.debounce_readings is None and self.debounce_hold is None:
            raise PolicyError("debounce needs a count of readings, a hold time, or both")
        if self.debounce_readings is not None and self.debounce_readings < 1:
            raise PolicyError("debounce_readings must be >= 1")
        if self.lockout_trips < 1:
            raise PolicyError("lockout_trips must be >= 1")


@dataclass(frozen=True, slots=True)
class Suspicion:
    """A malicious load seen `count` consecutive times since `since`; `base` is the load
    before the step (None when only the total matched)."""

    since: dt.datetime
    count: int
    base: Load | None


@dataclass(frozen=True, slots=True)
class ProtectionState:
    last: Load | None = None  # the previous reading's load
    suspicion: Suspicion | None = None
    overload_since: dt.datetime | None = None
    over_voltage_since: dt.datetime | None = None
    tripped: RelayCause | None = None
    tripped_at: dt.datetime | None = None
    recent_trips: tuple[dt.datetime, ...] = ()  # load trips within the lockout window
    locked_out: bool = False
    meter_trips: int | None = None  # the meter's own trip counter, as last read


def load_of(reading: Reading) -> Load | None:
    """The reading's load, or None without active power or any way to know reactive power."""
    p = reading.power_w
    if p is None:
        return None
    if reading.reactive_var is not None:
        return Load(p, reading.reactive_var)
    if reading.power_factor:
        pf = min(abs(reading.power_factor), 1.0)
        return Load(p, abs(p) * math.sqrt(1 - pf * pf) / pf)
    return None


def _suspect(
    load: Load, state: ProtectionState, policy: ProtectionPolicy, now: dt.datetime
) -> Suspicion | None:
    if not policy.windows:
        return None
    held = state.suspicion
    base = held.base if held is not None and held.base is not None else state.last
    total_hit = policy.judge_total and any(w.matches(load) for w in policy.windows)
    step_hit = False
    if policy.judge_step and base is not None:
        step = load.minus(base)
        step_hit = step.p > 0 and any(w.matches(step) for w in policy.windows)
    if not (total_hit or step_hit):
        return None
    step_base = base if step_hit else None
    if held is None:
        return Suspicion(now, 1, step_base)
    return Suspicion(held.since, held.count + 1, held.base or step_base)


def _debounced(suspicion: Suspicion, policy: ProtectionPolicy, now: dt.datetime) -> bool:
    by_count = policy.debounce_readings is not None and suspicion.count >= policy.debounce_readings
    by_time = policy.debounce_hold is not None and now - suspicion.since >= policy.debounce_hold
    return by_count or by_time


def _since(previous: dt.datetime | None, now: dt.datetime, condition: bool) -> dt.datetime | None:
    """When a condition that holds now began (None once it stops)."""
    if not condition:
        return None
    return previous if previous is not None else now


def _trip(
    now: dt.datetime,
    meter: str,
    state: ProtectionState,
    cause: RelayCause,
    *,
    why: str,
    policy: ProtectionPolicy,
) -> Decided[ProtectionState]:
    recent = state.recent_trips
    if cause in _COUNTS_FOR_LOCKOUT:
        recent = (*(t for t in recent if t > now - policy.lockout_window), now)
    locked = cause in _COUNTS_FOR_LOCKOUT and len(recent) >= policy.lockout_trips
    alarms = [Alarm(_ALARM_OF[cause], Severity.WARNING, why, meter=meter)]
    if locked:
        alarms.append(
            Alarm(
                AlarmKind.LOCKOUT,
                Severity.CRITICAL,
                f"{len(recent)} trips within {policy.lockout_window}: locked out until an "
                "operator resets it",
                meter=meter,
            )
        )
    new = ProtectionState(
        tripped=cause,
        tripped_at=now,
        recent_trips=recent,
        locked_out=locked,
        meter_trips=state.meter_trips,
    )
    action = RelayAction(meter, RelayCommand.TRIP, cause, why)
    return Decided(new, Decisions(relays=(action,), alarms=tuple(alarms)))


def _close(meter: str, state: ProtectionState, why: str) -> Decided[ProtectionState]:
    assert state.tripped is not None
    action = RelayAction(meter, RelayCommand.CLOSE, state.tripped, why)
    alarm = Alarm(AlarmKind.RECLOSE, Severity.INFO, why, meter=meter)
    # The relay was open: the load before closing is nothing, so all that comes on is a step.
    new = ProtectionState(
        last=NO_LOAD, recent_trips=state.recent_trips, meter_trips=state.meter_trips
    )
    return Decided(new, Decisions(relays=(action,), alarms=(alarm,)))


def _reclose(
    now: dt.datetime, reading: Reading, state: ProtectionState, policy: ProtectionPolicy
) -> Decided[ProtectionState]:
    assert state.tripped_at is not None
    if state.locked_out or policy.reclose_after is None:
        return Decided(state)
    if now - state.tripped_at < policy.reclose_after:
        return Decided(state)
    if state.tripped is RelayCause.OVER_VOLTAGE and (
        reading.voltage_v is None
        or (policy.over_voltage_v is not None and reading.voltage_v > policy.over_voltage_v)
    ):
        return Decided(state)
    return _close(reading.address, state, f"auto-reclose {policy.reclose_after} after the trip")


def protect(
    now: dt.datetime, reading: Reading, state: ProtectionState, policy: ProtectionPolicy
) -> Decided[ProtectionState]:
    """Judge one reading of one meter: trip, reclose, or carry on."""
    require_aware(now)
    before = state.meter_trips
    counted = dict(reading.counters).get(METER_TRIPS)
    if counted is not None and counted != before:
        state = dataclasses.replace(state, meter_trips=counted)
    if state.tripped is not None:
        return _reclose(now, reading, state, policy)
    meter = reading.address
    if counted is not None and before is not None and counted > before:
        why = (
            f"malicious load recognised by the meter itself: it tripped its relay "
            f"(its trip counter {before} → {counted})"
        )
        return _trip(now, meter, state, RelayCause.MALICIOUS_LOAD, why=why, policy=policy)
    volts, watts = reading.voltage_v, reading.power_w
    over_voltage_since = (
        state.over_voltage_since
        if volts is None
        else _since(
            state.over_voltage_since,
            now,
            policy.over_voltage_v is not None and volts > policy.over_voltage_v,
        )
    )
    if over_voltage_since is not None and now - over_voltage_since >= policy.over_voltage_hold:
        why = f"voltage {volts:g} V above {policy.over_voltage_v:g} V"
        return _trip(now, meter, state, RelayCause.OVER_VOLTAGE, why=why, policy=policy)
    overload_since = (
        state.overload_since
        if watts is None
        else _since(
            state.overload_since, now, policy.overload_w is not None and watts > policy.overload_w
        )
    )
    if overload_since is not None and now - overload_since >= policy.overload_hold:
        why = f"power {watts:g} W above {policy.overload_w:g} W for {now - overload_since}"
        return _trip(now, meter, state, RelayCause.OVERLOAD, why=why, policy=policy)
    load = load_of(reading)
    if load is None:  # nothing to judge a load by: the suspicion and the baseline stand
        return Decided(
            dataclasses.replace(
                state, overload_since=overload_since, over_voltage_since=over_voltage_since
            )
        )
    suspicion = _suspect(load, state, policy, now)
    if suspicion is not None and _debounced(suspicion, policy, now):
        step = load.minus(suspicion.base) if suspicion.base is not None else None
        seen = (
            f"step {step.p:.0f} W at PF {step.pf:.2f}"
            if step is not None
            else f"load {load.p:.0f} W at PF {load.pf:.2f}"
        )
        why = f"malicious load: {seen}, {suspicion.count} readings"
        return _trip(now, meter, state, RelayCause.MALICIOUS_LOAD, why=why, policy=policy)
    return Decided(
        dataclasses.replace(
            state,
            last=load,
            suspicion=suspicion,
            overload_since=overload_since,
            over_voltage_since=over_voltage_since,
        )
    )


def reset_lockout(meter: str, state: ProtectionState) -> Decided[ProtectionState]:
    """An operator's reset: forget the trip history and close the relay if protection holds
    it open."""
    if state.tripped is None:
        return Decided(ProtectionState(last=state.last, meter_trips=state.meter_trips))
    cleared = dataclasses.replace(state, recent_trips=(), locked_out=False)
    return _close(meter, cleared, "operator reset")
