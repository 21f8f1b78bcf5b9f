"""Simulated meters on simulated buses, built from a small spec.

A `BusSpec` says which protocol, how many meters, the line settings and faults; `SimulatedBus`
makes the meters (a `MeterState`, the protocol's responder and a `Load` each), puts them on a
`PtyBus` and advances their loads on the bus thread, so a reply never sees half an update.
`SimulatedSite` is several buses, as `voltbook-demo sim`, the demo and the benchmarks use.

Everything random (addresses, starting registers, which profile, when appliances run, line
faults) comes from the seed, so two runs with the same spec serve the same site.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Literal

from demo.sim.cjt188_responder import Cjt188Responder
from demo.sim.dlt645_responder import Dlt645Responder
from demo.sim.load import PROFILES, Load
from demo.sim.pty_bus import DEFAULT_TURNAROUND, LineFaults, PtyBus
from demo.sim.state import MeterState
from edge.drivers.base import Responder, SerialSettings
from edge.drivers.registry import protocol

# How quickly each kind of meter answers (the bus default; DL/T 645 allows 20..500 ms).
TURNAROUND_S: Final[dict[str, float]] = {
    "dlt645": DEFAULT_TURNAROUND,
    "cjt188": DEFAULT_TURNAROUND,
    "modbus": 0.010,
}
ELECTRIC_PROFILES: Final = ("shop", "office", "restaurant", "night_heater")
WATER_PROFILES: Final = ("water_shop",)
OVER_VOLTAGE_V: Final = 264.0  # 20 % above 220 V: trips the over-voltage flag of any meter
LOAD_TICK_S: Final = 1.0
MAX_MODBUS_UNITS: Final = 247


@dataclass(frozen=True, slots=True)
class BusSpec:
    """One simulated bus. None fields take the protocol's or the simulator's default."""

    protocol: str = "dlt645"
    meters: int = 4
    baudrate: int | None = None
    parity: Literal["E", "N", "O"] | None = None
    wire_timing: bool = True
    turnaround: float | None = None
    faults: LineFaults = field(default_factory=LineFaults)
    profiles: tuple[str, ...] | None = None  # assigned round-robin; None: by kind of meter
    addressing: Literal["random", "sequential"] = "random"
    over_voltage: bool = False

    def settings(self) -> SerialSettings:
        base = protocol(self.protocol).default_settings
        return SerialSettings(
            baudrate=self.baudrate or base.baudrate,
            parity=self.parity or base.parity,
            bytesize=base.bytesize,
            stopbits=base.stopbits,
        )


@dataclass(slots=True)
class SimMeter:
    state: MeterState
    responder: Responder
    load: Load


def meter_addresses(spec: BusSpec, rng: random.Random) -> list[str]:
    """Distinct addresses in the protocol's form (random serials, or consecutive ones)."""
    addressing = protocol(spec.protocol).addressing
    if addressing == "modbus":
        if spec.meters > MAX_MODBUS_UNITS:
            raise ValueError(f"a Modbus bus holds at most {MAX_MODBUS_UNITS} meters")
        return [str(unit) for unit in range(1, spec.meters + 1)]
    digits = 12 if addressing == "dlt645" else 14
    if spec.addressing == "sequential":
        first = rng.randrange(10 ** (digits - 1), 10**digits - spec.meters)
        return [f"{first + i:0{digits}d}" for i in range(spec.meters)]
    chosen: set[str] = set()
    while len(chosen) < spec.meters:
        chosen.add(f"{rng.randrange(10**digits):0{digits}d}")
    return sorted(chosen)


def responder_for(state: MeterState) -> Responder:
    """The protocol side of a simulated meter of `state.protocol`."""
    info = protocol(state.protocol)
    if info.name == "dlt645":
        return Dlt645Responder(state, 2007)
    if info.name == "dlt645-1997":
        return Dlt645Responder(state, 1997)
    if info.name == "cjt188":
        return Cjt188Responder(state)
    from demo.sim.modbus_responder import ModbusResponder  # pymodbus: ~40 MB, only if needed

    return ModbusResponder(state, info.name, int(state.address))


def build_meters(spec: BusSpec, *, seed: int, now: dt.datetime) -> list[SimMeter]:
    rng = random.Random(f"{seed}:{spec.protocol}:{spec.meters}")
    kind = protocol(spec.protocol).kind
    profiles = spec.profiles or (WATER_PROFILES if kind == "water" else ELECTRIC_PROFILES)
    for name in profiles:
        if name not in PROFILES or PROFILES[name].kind != kind:
            raise ValueError(f"profile {name!r} is not a {kind} load profile")
    meters = []
    for i, address in enumerate(meter_addresses(spec, rng)):
        state = MeterState(address=address, protocol=spec.protocol, clock=now.replace(tzinfo=None))
        if kind == "water":
            state.volume_ml = rng.randrange(0, 500_000_000)  # up to 500 m³ so far
        else:
            state.energy_mwh = rng.randrange(10_000_000, 20_000_000_000)  # 10 kWh .. 20 MWh
            share = [rng.random() for _ in state.tariff_mwh]
            booked = [int(state.energy_mwh * s / sum(share)) for s in share]
            booked[-1] += state.energy_mwh - sum(booked)
            state.tariff_mwh = booked
        load = Load(
            profiles[i % len(profiles)],
            seed=seed,
            nominal_voltage_v=OVER_VOLTAGE_V if spec.over_voltage else 220.0,
        )
        load.advance(state, 0, now)  # instantaneous values from the start
        meters.append(SimMeter(state, responder_for(state), load))
    return meters


class SimulatedBus:
    """Meters on one pty bus; `port` is what a client opens. Start, use, stop."""

    def __init__(
        self,
        spec: BusSpec,
        *,
        seed: int = 0,
        name: str = "sim-bus",
        speed: float = 1.0,
        tz: dt.tzinfo | None = None,
        start: dt.datetime | None = None,
    ) -> None:
        self.spec = spec
        self.settings = spec.settings()
        self.speed = speed  # simulated seconds per real second, for the loads
        # Simulated time runs `speed` times as fast as the wall clock, from `start` (default:
        # the wall time now).
        self._started_wall = start or dt.datetime.now(tz).astimezone(tz)
        self._started_mono = self._last_tick = time.monotonic()
        addressing = protocol(spec.protocol).addressing
        turnaround = spec.turnaround
        if turnaround is None:
            turnaround = TURNAROUND_S["modbus" if addressing == "modbus" else addressing]
        self.meters = build_meters(spec, seed=seed, now=self._now())
        faults = spec.faults
        self.pty = PtyBus(
            self.settings,
            wire_timing=spec.wire_timing,
            turnaround=turnaround,
            faults=LineFaults(faults.noise, faults.corrupt, faults.loss, seed=faults.seed or seed),
            name=name,
        )
        for meter in self.meters:
            self.pty.attach(meter.responder, name=meter.state.address)

    @property
    def port(self) -> str:
        return self.pty.port

    @property
    def addresses(self) -> list[str]:
        return [m.state.address for m in self.meters]

    def meter(self, address: str) -> SimMeter:
        for m in self.meters:
            if m.state.address == address:
                return m
        raise KeyError(address)

    def _now(self) -> dt.datetime:
        """Simulated wall time of the site."""
        elapsed = (time.monotonic() - self._started_mono) * self.speed
        return self._started_wall + dt.timedelta(seconds=elapsed)

    def _tick(self) -> None:
        """Advance every load by the real time since the last tick (× speed)."""
        mono = time.monotonic()
        elapsed, self._last_tick = (mono - self._last_tick) * self.speed, mono
        now = self._now()
        for meter in self.meters:
            meter.load.advance(meter.state, elapsed, now)

    def start(self, *, advance_loads: bool = True) -> SimulatedBus:
        if advance_loads:
            self.pty.every(LOAD_TICK_S, self._tick)
        self.pty.start()
        return self

    def stop(self) -> None:
        self.pty.stop()

    def __enter__(self) -> SimulatedBus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def describe(self) -> dict[str, object]:
        s = self.settings
        return {
            "port": self.port,
            "protocol": self.spec.protocol,
            "baudrate": s.baudrate,
            "parity": s.parity,
            "wire_timing": self.spec.wire_timing,
            "meters": self.addresses,
        }


class SimulatedSite:
    """Several simulated buses, started and stopped together."""

    def __init__(
        self,
        specs: list[BusSpec],
        *,
        seed: int = 0,
        speed: float = 1.0,
        start: dt.datetime | None = None,
    ) -> None:
        self.buses: list[SimulatedBus] = []
        try:
            for i, spec in enumerate(specs):
                bus = SimulatedBus(
                    spec, seed=seed + i, name=f"sim-bus-{i + 1}", speed=speed, start=start
                )
                self.buses.append(bus)
        except BaseException:
            self.stop()  # close the ptys already opened
            raise

    def start(self) -> SimulatedSite:
        started: list[SimulatedBus] = []
        try:
            for bus in self.buses:
                started.append(bus.start())
        except BaseException:
            for bus in started:
                bus.stop()
            raise
        return self

    def stop(self) -> None:
        for bus in self.buses:
            bus.stop()

    def __enter__(self) -> SimulatedSite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
