"""Assemble a runtime from a loaded site: key, store, buses, simulated meters, clock, seed.

Order matters for "a bad configuration touches nothing": the site is loaded and checked
(`edge.site.load_site`) and the node key read before anything is created or opened for
writing; only then is the data directory made, the store opened (its integrity check runs at
every open) and the ports opened.

Buses by kind:

- `serial`: `edge.drivers.bus.SerialBus` on the configured port;
- `simulated`: the site's simulated meters (`demo.sim.persist.SimulatedBuilding`, on disk),
  served on a pty with real wire timing at `--speed 1` (`demo.sim.pty_bus.PtyBus` +
  `SerialBus`), or in-process without wire timing (`demo.sim.direct_bus.DirectBus`) when the
  simulated clock runs faster, where byte times would make no sense;
- `lora`: an SX127x radio on the Pi's SPI (`edge.drivers.lora.RadioBus`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from demo.sim.direct_bus import DirectBus
from demo.sim.persist import MeterSpec, SimulatedBuilding
from edge.drivers.base import Bus, Responder
from edge.runtime.clock import Clock, ManualClock, SimulatedClock, SystemClock
from edge.runtime.cycle import Runtime
from edge.runtime.reconfigure import reconcile
from edge.runtime.seed import read_seed
from edge.site.errors import SiteConfigError
from edge.site.model import BusConfig, BusKind, MeterConfig, Site
from edge.store import Store
from ledger.chain import NodeKey
from ledger.errors import DecodeError

log = logging.getLogger("edge.runtime")


class BootError(Exception):
    """The runtime cannot start; the message says why and what to do."""


def read_node_key(path: Path) -> NodeKey:
    try:
        return NodeKey.from_pem(path.read_bytes())
    except FileNotFoundError:
        raise SiteConfigError(
            path, "the node key does not exist (provision the concentrator with voltbook-fw)"
        ) from None
    except (OSError, ValueError, DecodeError, TypeError) as exc:
        raise SiteConfigError(
            path, f"the node key is not a usable Ed25519 PEM key ({exc})"
        ) from None


@dataclass(slots=True)
class Booted:
    """A runtime and everything it holds open; `close()` releases it all."""

    runtime: Runtime
    building: SimulatedBuilding | None
    clock: Clock
    stack: ExitStack = field(default_factory=ExitStack)

    def close(self) -> None:
        try:
            self.stack.close()
        finally:
            if self.building is not None:
                self.building.save()
            self.runtime.store.close()


def _open_building(site: Site) -> SimulatedBuilding:
    simulation = site.simulation
    assert simulation is not None  # load_site adds one whenever a bus is simulated
    if SimulatedBuilding.exists(simulation.state_dir):
        building = SimulatedBuilding.open(simulation.state_dir, site.zone)
    else:
        start = simulation.start or dt.datetime.now(site.zone)
        building = SimulatedBuilding.create(
            simulation.state_dir, (), start=start, seed=simulation.seed
        )
    simulated = {b.name for b in site.buses if b.kind is BusKind.SIMULATED}
    added = False
    for meter in site.meters:
        if meter.bus in simulated and meter.address not in building.meters:
            # A meter configured after the building was made: installed now, from zero.
            building.add_meter(MeterSpec(meter.address, meter.protocol, meter.profile or "shop"))
            added = True
    if added:
        building.save()
    return building


def _simulated_bus(
    bus: BusConfig, site: Site, building: SimulatedBuilding, direct: bool, stack: ExitStack
) -> tuple[Bus, Callable[[str, Responder], None]]:
    """The bus, and how to put one more simulated meter on it."""
    addresses = [m.address for m in site.meters if m.bus == bus.name]
    responders = building.responders(addresses)
    if direct:
        direct_bus = DirectBus(responders, name=bus.name)
        return direct_bus, direct_bus.attach
    from demo.sim.pty_bus import PtyBus
    from edge.drivers.bus import SerialBus

    pty = PtyBus(bus.settings(), wire_timing=True, name=bus.name)
    for address, responder in responders.items():
        pty.attach(responder, name=address)
    stack.callback(pty.stop)
    pty.start()
    serial = SerialBus(pty.port, bus.settings())
    stack.callback(serial.close)
    return serial, lambda address, responder: pty.attach(responder, name=address)


def _installer(
    building: SimulatedBuilding, attach: dict[str, Callable[[str, Responder], None]]
) -> Callable[[MeterConfig, int], None]:
    """Install a meter a new configuration adds (a swap's new meter at its initial register)
    in the simulated building, on its bus: what a technician does on a real site."""

    def install(meter: MeterConfig, start_wh: int) -> None:
        on_bus = attach.get(meter.bus)
        if on_bus is None:
            return  # a real bus: the meter is there or it is not
        if meter.address not in building.meters:
            energy_mwh = start_wh // meter.multiplier * 1000
            building.add_meter(
                MeterSpec(meter.address, meter.protocol, meter.profile or "shop", energy_mwh)
            )
            building.save()
        on_bus(meter.address, building.responders([meter.address])[meter.address])
        log.info("simulated meter %s installed on %s", meter.address, meter.bus)

    return install


def _hardware_bus(bus: BusConfig, stack: ExitStack) -> Bus:
    if bus.kind is BusKind.SERIAL:
        from edge.drivers.bus import SerialBus

        assert bus.port is not None
        serial = SerialBus(bus.port, bus.settings())
        stack.callback(serial.close)
        return serial
    from edge.drivers.lora import RadioBus, RadioConfig
    from edge.drivers.sx127x import Sx127xRadio

    base = RadioConfig()
    config = RadioConfig(
        frequency_hz=bus.frequency_hz or base.frequency_hz,
        sf=bus.spreading_factor or base.sf,
        bw_hz=bus.bandwidth_hz or base.bw_hz,
    )
    return RadioBus(Sx127xRadio(config))


def boot(
    site: Site,
    *,
    speed: float = 1.0,
    clock: Clock | None = None,
    direct: bool | None = None,
) -> Booted:
    """Open everything `site` needs and return the runtime, ready for `run_cycle()`.

    `speed` > 1 runs a simulated clock that fast (simulated buses only, in-process: no wire
    timing). `clock` replaces the clock altogether (tests, benchmarks). `direct` forces the
    in-process bus for simulated meters (default: whenever the clock is not real time).
    """
    if speed != 1.0 and not site.simulated:
        raise BootError(
            f"--speed {speed:g} needs every bus simulated; {site.settings.path} has real buses "
            "(meters cannot be made to run faster): run without --speed"
        )
    key = read_node_key(site.settings.node_key)
    seed = (
        []
        if site.settings.seed_file is None
        else read_seed(site.settings.seed_file, set(site.accounts))
    )
    site.settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(
        site.settings.store_path,
        node=site.settings.node,
        accounts=site.ledger_accounts(),
        size_limit_bytes=site.settings.store_limit_bytes,
        public_key=key.public_key,
    )
    stack = ExitStack()
    building: SimulatedBuilding | None = None
    try:
        site = reconcile(site, store)  # documents a command stored but the file lacks
        if any(b.kind is BusKind.SIMULATED for b in site.buses):
            building = _open_building(site)
        if clock is None:
            if building is not None and site.simulated:
                clock = SimulatedClock(building.time, speed)
            else:
                clock = SystemClock(site.zone)
        in_process = (
            direct if direct is not None else (speed != 1.0 or isinstance(clock, ManualClock))
        )
        buses: dict[str, Bus] = {}
        attach: dict[str, Callable[[str, Responder], None]] = {}
        for bus in site.buses:
            if bus.kind is BusKind.SIMULATED:
                assert building is not None
                buses[bus.name], attach[bus.name] = _simulated_bus(
                    bus, site, building, in_process, stack
                )
            else:
                buses[bus.name] = _hardware_bus(bus, stack)
        world: Callable[[], None] | None = None
        install: Callable[[MeterConfig, int], None] | None = None
        if building is not None:
            world = _world(building, clock)
            install = _installer(building, attach)
        runtime = Runtime(
            site,
            store,
            key,
            buses,
            clock,
            world=world,
            parallel=sum(not isinstance(b, DirectBus) for b in buses.values()) > 1,
            install=install,
        )
        booted = Booted(runtime, building, clock, stack)
        for recharge in seed:
            runtime.recharge(recharge.account, recharge.fen, recharge.payment, method="seed")
    except BaseException:
        stack.close()
        store.close()
        raise
    return booted


def _world(building: SimulatedBuilding, clock: Clock) -> Callable[[], None]:
    def advance() -> None:
        # Saved BEFORE the meters answer: whatever the runtime reads is already on disk, so a
        # SIGKILL never leaves the ledger ahead of the meters' registers.
        building.advance_to(clock.true_now())
        building.save()

    return advance
