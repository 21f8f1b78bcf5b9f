"""Simulated meters that live on disk, so a restarted runtime finds them as a real building would.

A real meter keeps its registers, its relay and its clock through a concentrator's crash. The
simulated meters of a site (`voltbook-demo site`, `voltbook-edge run` on simulated buses)
must too, or a runtime killed and restarted would read registers that jumped back. So the
building's state is one JSON file in the site directory (`sim/meters.json`):

    {"version": 1, "seed": 7, "time": "2026-11-03T08:15:00+08:00",
     "meters": [{"address": "…", "protocol": "dlt645", "profile": "shop",
                 "energy_mwh": 12345678, "tariff_mwh": [1, 2, 3, 4], "relay_closed": true,
                 "keep_power": false, "clock": "2026-11-03T08:15:00", "counters": {}, …}]}

`time` is the simulated time the meters have reached (the simulated clock resumes from it).
Every save is atomic (temporary file, fsync, rename, directory fsync: `atomic_write`), and the
runtime saves *before* the meters answer a poll and right after a relay command moved a relay,
so whatever a runtime has read or commanded is on disk before it can have been stored: after
a SIGKILL the registers are never behind what the ledger billed.

The load behind each meter is rebuilt from its profile name and the site seed (`Load` is
deterministic in time), so only the physical state needs saving; the sub-milli-Wh remainder a
`Load` carries is lost at a restart, as a real meter's would be at a power cut.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from demo.sim.cjt188_responder import Cjt188Responder
from demo.sim.load import PROFILES, Load, LoadProfile, Use
from demo.sim.site import responder_for
from demo.sim.state import MeterState
from edge.drivers.base import Responder
from edge.drivers.registry import DriverOptions, protocol
from edge.site.simulation import SimulationError
from edge.store.config_db import atomic_write, remove_stale_temporaries

STATE_FILE: Final = "meters.json"
FORMAT_VERSION: Final = 1

# Profiles with steady appliances only (duty 1): energy that is exactly predictable and cheap
# to simulate for a month, with a malicious-looking night load for the protection rules.
EXTRA_PROFILES: Final[dict[str, LoadProfile]] = {
    p.name: p
    for p in (
        LoadProfile(
            "steady_shop",
            "electric",
            (Use("lighting", 8, 21), Use("computer", 9, 20)),
        ),
        LoadProfile(
            "night_kettle",
            "electric",
            (Use("kettle_steady", 20, 8), Use("lighting", 8, 20)),
        ),
    )
}


def profile_named(name: str) -> LoadProfile:
    """A load profile of the simulator or of this module; KeyError naming the known ones."""
    found = PROFILES.get(name) or EXTRA_PROFILES.get(name)
    if found is None:
        known = ", ".join([*PROFILES, *EXTRA_PROFILES])
        raise KeyError(f"unknown load profile {name!r} (known: {known})")
    return found


class SimStateError(SimulationError):
    """The simulated building's file is unreadable; says which file and what to do."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"simulated meters {path} are unreadable: {detail}; restore it or write a new site "
            "with `voltbook-demo site`"
        )
        self.path = path


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """A simulated meter to create: its address, protocol, load and starting registers."""

    address: str
    protocol: str
    profile: str
    energy_mwh: int = 0


@dataclass(slots=True)
class SimulatedMeter:
    state: MeterState
    profile: str
    load: Load
    responder: Responder

    def made_as(self, options: DriverOptions) -> None:
        """Answer as a meter of the make `options` describe (a CJ/T 188 meter's type and DI
        byte order; a strict make knows only its own order)."""
        responder = self.responder
        if isinstance(responder, Cjt188Responder):
            responder.meter_type = options.meter_type or responder.meter_type
            if options.di_order is not None:
                responder.di_order, responder.either_di_order = options.di_order, False


class _SavingResponder:
    """A meter's responder that saves the building as soon as a command moved its relay."""

    def __init__(self, building: SimulatedBuilding, meter: SimulatedMeter) -> None:
        self._building = building
        self._meter = meter

    def feed(self, data: bytes) -> list[bytes]:
        state = self._meter.state
        before = (state.relay_closed, state.keep_power, state.valve_open)
        replies = self._meter.responder.feed(data)
        if (state.relay_closed, state.keep_power, state.valve_open) != before:
            self._building.save()
        return replies


class SimulatedBuilding:
    """The simulated meters of one site and the simulated time they have reached."""

    def __init__(
        self, directory: Path, meters: Iterable[SimulatedMeter], time: dt.datetime, seed: int
    ) -> None:
        self.directory = directory
        self.meters: dict[str, SimulatedMeter] = {m.state.address: m for m in meters}
        self.time = time
        self.seed = seed
        self.saves = 0

    @property
    def path(self) -> Path:
        return self.directory / STATE_FILE

    # -- creating and opening -----------------------------------------------------------------
    @classmethod
    def create(
        cls, directory: Path, specs: Iterable[MeterSpec], *, start: dt.datetime, seed: int
    ) -> SimulatedBuilding:
        """A new building whose meters start at `start` with the given registers; saved."""
        directory.mkdir(parents=True, exist_ok=True)
        building = cls(directory, (), start, seed)
        for spec in specs:
            building.add_meter(spec)
        building.save()
        return building

    def add_meter(self, spec: MeterSpec) -> SimulatedMeter:
        """Install a meter (a configured meter the building does not have yet)."""
        state = MeterState(
            address=spec.address,
            protocol=spec.protocol,
            energy_mwh=spec.energy_mwh,
            clock=self.time.replace(tzinfo=None),
        )
        # Book the starting energy to the valley register: the meter's history before the site.
        state.tariff_mwh[3] = spec.energy_mwh
        meter = self._meter(state, spec.profile)
        meter.load.advance(state, 0, self.time)  # instantaneous values from the start
        self.meters[spec.address] = meter
        return meter

    def _meter(self, state: MeterState, profile: str) -> SimulatedMeter:
        load = Load(profile_named(profile), seed=self.seed)
        return SimulatedMeter(state, profile, load, responder_for(state))

    @classmethod
    def open(cls, directory: Path, zone: dt.tzinfo) -> SimulatedBuilding:
        """The building saved in `directory`; SimStateError if its file is damaged."""
        path = directory / STATE_FILE
        remove_stale_temporaries(path)  # a save a crash interrupted never replaced the file
        try:
            data = json.loads(path.read_bytes())
            if data.get("version") != FORMAT_VERSION:
                raise SimStateError(path, f"format version {data.get('version')!r} unknown")
            time = dt.datetime.fromisoformat(data["time"]).astimezone(zone)
            building = cls(directory, (), time, int(data["seed"]))
            for raw in data["meters"]:
                state = _state_from_json(raw)
                building.meters[state.address] = building._meter(state, str(raw["profile"]))
        except FileNotFoundError:
            raise SimStateError(path, "the file does not exist") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SimStateError(path, f"{type(exc).__name__}: {exc}") from exc
        return building

    @classmethod
    def exists(cls, directory: Path) -> bool:
        return (directory / STATE_FILE).is_file()

    # -- running --------------------------------------------------------------------------------
    def responders(self, addresses: Iterable[str]) -> dict[str, Responder]:
        """The responders of these meters, saving the building whenever a relay moves."""
        return {a: _SavingResponder(self, self.meters[a]) for a in addresses}

    def advance_to(self, now: dt.datetime) -> None:
        """Let the loads run until `now` (simulated time never runs backwards)."""
        seconds = (now - self.time).total_seconds()
        if seconds <= 0:
            return
        for meter in self.meters.values():
            meter.load.advance(meter.state, seconds, now)
        self.time = now

    def save(self) -> None:
        """Write the whole building atomically (raises the store's DiskFull/StoreError)."""
        data = {
            "version": FORMAT_VERSION,
            "seed": self.seed,
            "time": self.time.isoformat(),
            "meters": [_state_to_json(m.state, m.profile) for m in self.meters.values()],
        }
        atomic_write(self.path, json.dumps(data, separators=(",", ":")).encode())
        self.saves += 1

    def registers_wh(self) -> dict[str, int]:
        """Each meter's total register as the meter shows it (0.01 kWh steps), in Wh."""
        return {a: m.state.energy_mwh // 10_000 * 10 for a, m in self.meters.items()}


def _state_to_json(state: MeterState, profile: str) -> dict[str, Any]:
    return {
        "address": state.address,
        "protocol": state.protocol,
        "profile": profile,
        "energy_mwh": state.energy_mwh,
        "tariff_mwh": list(state.tariff_mwh),
        "relay_closed": state.relay_closed,
        "keep_power": state.keep_power,
        "alarm": state.alarm,
        "clock": state.clock.isoformat(),
        "counters": dict(state.counters),
        "parameters": dict(state.parameters),
        "volume_ml": state.volume_ml,
        "valve_open": state.valve_open,
    }


def _state_from_json(raw: Mapping[str, Any]) -> MeterState:
    protocol(str(raw["protocol"]))  # refuse a protocol this release does not know
    return MeterState(
        address=str(raw["address"]),
        protocol=str(raw["protocol"]),
        energy_mwh=int(raw["energy_mwh"]),
        tariff_mwh=[int(x) for x in raw["tariff_mwh"]],
        relay_closed=bool(raw["relay_closed"]),
        keep_power=bool(raw["keep_power"]),
        alarm=bool(raw.get("alarm", False)),
        clock=dt.datetime.fromisoformat(str(raw["clock"])),
        counters={str(k): int(v) for k, v in dict(raw.get("counters", {})).items()},
        parameters={str(k): int(v) for k, v in dict(raw.get("parameters", {})).items()},
        volume_ml=int(raw.get("volume_ml", 0)),
        valve_open=bool(raw.get("valve_open", True)),
    )
