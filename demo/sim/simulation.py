"""The simulator behind a site's `simulated` buses: `edge.site.simulation`'s seam, implemented.

pyproject.toml declares `SIMULATOR` under the `voltbook.simulation` entry point, which is how
`voltbook-edge run` finds it without the concentrator importing anything of `demo`:

- `DemoSimulator.check_meter` refuses a meter whose load profile does not exist (the site
  loader turns that into a `SiteConfigError` naming the configuration documents);
- `DemoSimulator.open` opens the site's `SimulatedBuilding` (`demo.sim.persist`, on disk), or
  makes it on a first boot, and installs every configured meter it lacks, from zero;
- `BuildingSimulation` serves the building's meters on a pty with real wire timing
  (`PtyBus` + `SerialBus`) or in-process without it (`DirectBus`), or, for a bus with
  `radio = "lora"`, over the air (`demo.sim.lora_bus`: the real pyLoRa on the SX127x stand-in,
  a lossy `RadioMedium`), advances and saves it.

Tests and benchmarks that look at the simulated meters themselves use `building_of(booted)`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Final

from demo.sim.direct_bus import DirectBus
from demo.sim.persist import MeterSpec, SimulatedBuilding, profile_named
from edge.drivers.base import Bus, Responder
from edge.drivers.errors import DriverUsageError
from edge.drivers.registry import NO_OPTIONS
from edge.site.model import BusConfig, BusKind, MeterConfig, Site
from edge.site.simulation import SimulationError, Simulator

if TYPE_CHECKING:
    from demo.sim.lora_bus import LoraAir
    from edge.runtime.boot import Booted

log = logging.getLogger("demo.sim")

DEFAULT_PROFILE: Final = "shop"


class BuildingSimulation:
    """A site's simulated building, open, serving its meters. Satisfies
    `edge.site.simulation.Simulation`."""

    def __init__(self, building: SimulatedBuilding, *, seed: int = 0) -> None:
        self.building = building
        self._seed = seed  # the radio buses' air is drawn from it
        self.airs: dict[str, LoraAir] = {}  # the air of each radio bus, by bus name
        self._attach: dict[str, Callable[[str, Responder], None]] = {}
        self._stack = ExitStack()

    @property
    def time(self) -> dt.datetime:
        return self.building.time

    def bus(self, bus: BusConfig, addresses: Sequence[str], *, in_process: bool) -> Bus:
        for address in addresses:  # the simulated meters are the makes site.toml declares
            self.building.meters[address].made_as(
                bus.meter_options.get(address, NO_OPTIONS).over(bus.options)
            )
        responders = self.building.responders(addresses)
        if bus.radio == "lora":
            from demo.sim.lora_bus import LoraAir  # pyLoRa only for sites that have a radio

            air = LoraAir(bus, responders, real_time=not in_process, seed=self._seed)
            self._stack.callback(air.close)
            self._attach[bus.name] = air.attach
            self.airs[bus.name] = air
            return air.bus
        if in_process:
            direct = DirectBus(responders, name=bus.name)
            self._attach[bus.name] = direct.attach
            return direct
        from demo.sim.pty_bus import PtyBus
        from edge.drivers.bus import SerialBus

        pty = PtyBus(bus.settings(), wire_timing=True, name=bus.name)
        for address, responder in responders.items():
            pty.attach(responder, name=address)
        self._stack.callback(pty.stop)
        pty.start()
        serial = SerialBus(pty.port, bus.settings())
        self._stack.callback(serial.close)
        self._attach[bus.name] = lambda address, responder: pty.attach(responder, name=address)
        return serial

    def meters_of(self, protocol: str) -> list[str]:
        return sorted(a for a, m in self.building.meters.items() if m.state.protocol == protocol)

    def install(self, meter: MeterConfig, start_wh: int) -> None:
        attach = self._attach.get(meter.bus)
        if attach is None:
            raise ValueError(f"meter {meter.address}: bus {meter.bus!r} is not served here")
        building = self.building
        if meter.address not in building.meters:
            energy_mwh = start_wh // meter.multiplier * 1000
            profile = meter.profile or DEFAULT_PROFILE
            building.add_meter(MeterSpec(meter.address, meter.protocol, profile, energy_mwh))
            building.save()
        attach(meter.address, building.responders([meter.address])[meter.address])
        log.info("simulated meter %s installed on %s", meter.address, meter.bus)

    def advance_to(self, now: dt.datetime) -> None:
        self.building.advance_to(now)

    def save(self) -> None:
        self.building.save()

    def close(self) -> None:
        self._stack.close()


class DemoSimulator:
    """Satisfies `edge.site.simulation.Simulator`: the entry point's object."""

    def check_meter(self, meter: MeterConfig) -> None:
        if meter.profile is None:
            return
        try:
            profile_named(meter.profile)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None

    def open(self, site: Site) -> BuildingSimulation:
        """Raises `SimStateError` (a `SimulationError`) if the building's file is damaged."""
        settings = site.simulation
        assert settings is not None  # load_site adds one whenever a bus is simulated
        if SimulatedBuilding.exists(settings.state_dir):
            building = SimulatedBuilding.open(settings.state_dir, site.zone)
        else:
            # The instant given, in the site's zone (converted, not relabelled): the meters'
            # clocks are naive local time.
            start = (settings.start or dt.datetime.now(site.zone)).astimezone(site.zone)
            building = SimulatedBuilding.create(
                settings.state_dir, (), start=start, seed=settings.seed
            )
        simulated = {b.name for b in site.buses if b.kind is BusKind.SIMULATED}
        added = False
        for meter in site.meters:
            if meter.bus in simulated and meter.address not in building.meters:
                # A meter configured after the building was made: installed now, from zero.
                profile = meter.profile or DEFAULT_PROFILE
                building.add_meter(MeterSpec(meter.address, meter.protocol, profile))
                added = True
        if added:
            building.save()
        for bus in site.buses:
            if bus.kind is BusKind.SIMULATED and bus.radio is not None:
                _check_radio(bus)
        return BuildingSimulation(building, seed=settings.seed)


def _check_radio(bus: BusConfig) -> None:
    """Refuse, before anything is opened, a simulated radio the band rules forbid."""
    try:
        bus.radio_config().validate()
    except DriverUsageError as exc:
        raise SimulationError(f"simulated radio bus {bus.name!r}: {exc}") from None


SIMULATOR: Final[Simulator] = DemoSimulator()  # typed so mypy checks it keeps the contract


def building_of(booted: Booted) -> SimulatedBuilding:
    """The simulated building a booted runtime reads (tests, benchmarks, the demo)."""
    simulation = booted.simulation
    assert isinstance(simulation, BuildingSimulation), "the site has no simulated buses"
    return simulation.building
