"""What runs behind a simulated meter: appliances, daily load profiles, and the energy they add.

Appliances and water fixtures are rows in tables (power and power factor, or flow); a profile
says which of them run in which hours of the day, and how many. `Load.advance(state, seconds,
now)` integrates the interval ending at `now` in steps of at most a minute:

- active energy (integer milli-Wh, the fraction carried to the next call so nothing is lost)
  goes to the total and to the time-of-use register the meter's *own* clock selects (a meter
  bills by its clock, which is why broadcast time sync matters), and the meter clock runs on;
- voltage, current, active and reactive power, power factor and frequency are set from the
  appliances running at `now` (apparent power from the sum of P and of Q, so a 200 W computer
  at PF 0.70 next to a 2 kW kettle at PF 0.97 gives the mixed PF a real meter shows);
- an open relay (`relay_closed` False) cuts the load; a water meter with its valve closed
  stops the flow; a meter holding a malicious-load window trips itself when the load stays
  in it (`demo.sim.meter_guard`), and no energy is counted after that second.

Whether an appliance is on in a given slot is a hash of (seed, meter, appliance, slot), not a
random stream, so a run is reproducible however often `advance` is called.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from typing import Final, Literal

from demo.sim.meter_guard import guard
from demo.sim.state import MeterState

MILLI_WH_PER_JOULE: Final = 1 / 3.6  # 1 mWh = 3.6 J
MAX_STEP_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Appliance:
    """An electrical load. It runs `duty` of its on-hours, decided per `cycle_s` slot; or, with
    `on_s` (from, to), from `from` to `to` seconds into every slot (slots start on the epoch's
    multiples of `cycle_s`: with 900 s, on the quarter hours)."""

    name: str
    power_w: float
    power_factor: float
    duty: float = 1.0
    cycle_s: int = 600
    on_s: tuple[int, int] | None = None

    def on(self, epoch: float, chance: float) -> bool:
        """Running at `epoch` (seconds), where `chance` is this slot's draw in [0, 1)."""
        if self.on_s is not None:
            return self.on_s[0] <= epoch % self.cycle_s < self.on_s[1]
        return self.duty >= 1.0 or chance < self.duty


@dataclass(frozen=True, slots=True)
class Fixture:
    """A water draw-off point: flow while open."""

    name: str
    flow_l_per_min: float
    duty: float
    cycle_s: int = 120


APPLIANCES: Final[dict[str, Appliance]] = {
    a.name: a
    for a in (
        Appliance("kettle", 2000.0, 0.97, duty=0.15, cycle_s=180),
        Appliance("computer", 200.0, 0.70),
        Appliance("lighting", 300.0, 0.90),
        Appliance("air_conditioner", 1500.0, 0.85, duty=0.6, cycle_s=900),
        Appliance("heater", 2000.0, 1.00, duty=0.5, cycle_s=600),
        Appliance("refrigerator", 150.0, 0.65, duty=0.4, cycle_s=1200),
        Appliance("hot_plate", 1800.0, 0.99, duty=0.5, cycle_s=300),
        # Always on: for tests and benchmarks that want exact, predictable energy.
        Appliance("kettle_steady", 2000.0, 0.97),
        # A kettle boiling for 40 s between two quarter-hour polls (6:40 to 7:20 past): what only
        # a fast `power` block sees.
        Appliance("kettle_brief", 2000.0, 0.99, cycle_s=900, on_s=(400, 440)),
    )
}

FIXTURES: Final[dict[str, Fixture]] = {
    f.name: f
    for f in (
        Fixture("tap", 6.0, duty=0.05),
        Fixture("toilet", 9.0, duty=0.02, cycle_s=60),
        Fixture("dishwashing", 8.0, duty=0.2, cycle_s=300),
    )
}

# Time-of-use register for each hour of the meter's clock (index into MeterState.tariff_mwh:
# 0 sharp, 1 peak, 2 flat, 3 valley), after a typical Chinese commercial tariff.
SHARP, PEAK, FLAT, VALLEY = 0, 1, 2, 3
TARIFF_BY_HOUR: Final[tuple[int, ...]] = (
    (VALLEY,) * 7  # 00-07
    + (FLAT,)  # 07-08
    + (PEAK,) * 3  # 08-11
    + (FLAT,) * 7  # 11-18
    + (PEAK,)  # 18-19
    + (SHARP,) * 2  # 19-21
    + (PEAK,) * 2  # 21-23
    + (VALLEY,)  # 23-24
)


@dataclass(frozen=True, slots=True)
class Use:
    """`count` of an appliance (or fixture) running from `start_hour` to `end_hour` (may wrap)."""

    name: str
    start_hour: int = 0
    end_hour: int = 24
    count: int = 1

    def active(self, hour: int) -> bool:
        if self.start_hour <= self.end_hour:
            return self.start_hour <= hour < self.end_hour
        return hour >= self.start_hour or hour < self.end_hour


@dataclass(frozen=True, slots=True)
class LoadProfile:
    name: str
    kind: Literal["electric", "water"]
    uses: tuple[Use, ...]


PROFILES: Final[dict[str, LoadProfile]] = {
    p.name: p
    for p in (
        LoadProfile(
            "shop",
            "electric",
            (
                Use("lighting", 8, 22),
                Use("computer", 9, 21),
                Use("kettle", 7, 22),
                Use("air_conditioner", 10, 20),
                Use("refrigerator"),
            ),
        ),
        LoadProfile(
            "office",
            "electric",
            (
                Use("lighting", 8, 19, count=2),
                Use("computer", 8, 18, count=4),
                Use("kettle", 9, 17),
                Use("air_conditioner", 9, 18),
            ),
        ),
        LoadProfile(
            "restaurant",
            "electric",
            (
                Use("lighting", 9, 23),
                Use("hot_plate", 10, 14, count=2),
                Use("hot_plate", 17, 21, count=2),
                Use("kettle", 6, 22, count=2),
                Use("refrigerator", count=2),
                Use("air_conditioner", 11, 21),
            ),
        ),
        # A resistive heater all night in a shop that should be closed: malicious-load material.
        LoadProfile("night_heater", "electric", (Use("heater", 20, 8), Use("lighting", 8, 20))),
        LoadProfile("constant", "electric", (Use("kettle_steady"),)),
        LoadProfile("brief_kettle", "electric", (Use("computer"), Use("kettle_brief"))),
        LoadProfile("idle", "electric", ()),
        LoadProfile(
            "water_shop",
            "water",
            (Use("tap", 8, 20), Use("toilet", 8, 20), Use("dishwashing", 11, 14)),
        ),
    )
}


def _unit_hash(*parts: object) -> float:
    """A reproducible number in [0, 1) from `parts` (not Python's salted `hash`)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Load:
    """The load behind one meter. Keep one per meter: it carries the sub-milli-Wh remainder."""

    def __init__(
        self,
        profile: LoadProfile | str,
        *,
        seed: int = 0,
        nominal_voltage_v: float = 220.0,
        nominal_frequency_hz: float = 50.0,
    ) -> None:
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        self.seed = seed
        self.nominal_voltage_v = nominal_voltage_v
        self.nominal_frequency_hz = nominal_frequency_hz
        self._carry = 0.0  # energy (mWh) or volume (ml) not yet booked

    def _running(self, address: str, when: dt.datetime) -> list[tuple[str, int]]:
        """(name, instance) of every appliance or fixture on at `when`."""
        on: list[tuple[str, int]] = []
        epoch = when.timestamp()
        for use in self.profile.uses:
            if not use.active(when.hour):
                continue
            item: Appliance | Fixture
            item = FIXTURES[use.name] if self.profile.kind == "water" else APPLIANCES[use.name]
            slot = int(epoch // item.cycle_s)
            for instance in range(use.count):
                chance = _unit_hash(self.seed, address, use.name, use.start_hour, instance, slot)
                if item.on(epoch, chance) if isinstance(item, Appliance) else chance < item.duty:
                    on.append((use.name, instance))
        return on

    def power_at(self, address: str, when: dt.datetime) -> tuple[float, float]:
        """Active (W) and reactive (var) power the profile draws at `when`, relay closed."""
        p = q = 0.0
        for name, _ in self._running(address, when):
            appliance = APPLIANCES[name]
            p += appliance.power_w
            q += appliance.power_w * math.tan(math.acos(appliance.power_factor))
        return p, q

    def flow_at(self, address: str, when: dt.datetime) -> float:
        """Litres per minute drawn at `when`, valve open."""
        return sum(FIXTURES[name].flow_l_per_min for name, _ in self._running(address, when))

    def advance(self, state: MeterState, seconds: float, now: dt.datetime) -> None:
        """Account for the `seconds` that end at `now` (wall time of the site)."""
        if seconds < 0:
            raise ValueError(f"cannot advance by {seconds} s")
        t = now - dt.timedelta(seconds=seconds)
        remaining = seconds
        while remaining > 0:
            step = min(remaining, MAX_STEP_S)
            if self.profile.kind == "water":
                self._flow(state, step, t)
            else:
                self._energy(state, step, t)
            state.clock += dt.timedelta(seconds=step)
            t += dt.timedelta(seconds=step)
            remaining -= step
        if self.profile.kind == "electric":
            self._instantaneous(state, now)

    def _energy(self, state: MeterState, step: float, when: dt.datetime) -> None:
        if not state.relay_closed:
            return
        power_w, reactive_var = self.power_at(state.address, when)
        closed_s = guard(state, power_w, reactive_var, step)
        self._carry += power_w * closed_s * MILLI_WH_PER_JOULE
        whole = int(self._carry)
        self._carry -= whole
        state.energy_mwh += whole
        state.tariff_mwh[TARIFF_BY_HOUR[state.clock.hour]] += whole

    def _flow(self, state: MeterState, step: float, when: dt.datetime) -> None:
        if not state.valve_open:
            return
        self._carry += self.flow_at(state.address, when) * step / 60.0 * 1000.0
        whole = int(self._carry)
        self._carry -= whole
        state.volume_ml += whole

    def _instantaneous(self, state: MeterState, now: dt.datetime) -> None:
        minute = int(now.timestamp() // 60)
        # The supply wanders a little from minute to minute, as a real one does.
        wobble = _unit_hash(self.seed, state.address, "grid", minute) - 0.5
        state.voltage_v = round(self.nominal_voltage_v * (1 + 0.02 * wobble), 1)
        state.frequency_hz = round(self.nominal_frequency_hz + 0.04 * wobble, 2)
        power_w, reactive_var = self.power_at(state.address, now)
        if not state.relay_closed:
            power_w = reactive_var = 0.0
        apparent_va = math.hypot(power_w, reactive_var)
        state.power_w = round(power_w, 1)
        state.reactive_var = round(reactive_var, 1)
        state.power_factor = round(power_w / apparent_va, 3) if apparent_va else 1.0
        state.current_a = round(apparent_va / state.voltage_v, 3)
