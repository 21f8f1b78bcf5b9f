"""Assemble a runtime from a loaded site: key, store, buses, simulated meters, clock, seed.

Order matters for "a bad configuration touches nothing": the site is loaded and checked
(`edge.site.load_site`) and the node key read before anything is created or opened for
writing; only then is the data directory made, the store opened (its integrity check runs at
every open) and the ports opened.

Buses by kind:

- `serial`: `edge.drivers.bus.SerialBus` on the configured port, inside a
  `edge.drivers.reconnect.ReconnectingBus`: a port missing, busy or unplugged is that bus
  down (reopened with backoff on the runtime's clock), never a runtime that cannot run;
- `simulated`: the site's simulated meters, from the simulator the site finds through
  `edge.site.simulation` (the `voltbook.simulation` entry point; edge imports no simulator):
  served on a pty with real wire timing at `--speed 1`, or in-process without wire timing
  when the simulated clock runs faster, where byte times would make no sense;
- `lora`: an SX127x radio on the Pi's SPI (`edge.drivers.lora.RadioBus`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.drivers.base import Bus
from edge.runtime.clock import Clock, ManualClock, SimulatedClock, SystemClock
from edge.runtime.cycle import Runtime
from edge.runtime.reconfigure import reconcile
from edge.runtime.seed import read_seed
from edge.site.errors import SiteConfigError
from edge.site.model import BusConfig, BusKind, MeterConfig, Site
from edge.site.node_pub import VerifyingKey, public_path, publish, read_public
from edge.site.simulation import Simulation, SimulationError, find_simulator
from edge.site.site_file import ENCRYPT_HINT
from edge.store import Store
from ledger import key_files
from ledger.chain import NodeKey
from ledger.errors import DecodeError

log = logging.getLogger("edge.runtime")


class BootError(Exception):
    """The runtime cannot start; the message says why and what to do."""


def read_node_key(path: Path) -> NodeKey:
    """The node key, opened with the key passphrase if it is encrypted (`ledger.key_files`)."""
    try:
        return key_files.load_node_key(path, key_files.passphrase(), encrypt_hint=ENCRYPT_HINT)
    except FileNotFoundError:
        raise SiteConfigError(
            path,
            "the node key does not exist (provision the concentrator: `voltbook-edge provision`,"
            " README, Provisioning a concentrator)",
        ) from None
    except key_files.KeyFileError as exc:
        raise SiteConfigError(path, f"the node key cannot be used: {exc}") from None
    except (OSError, ValueError, DecodeError, TypeError) as exc:
        raise SiteConfigError(
            path, f"the node key is not a usable Ed25519 PEM key ({exc})"
        ) from None


def _check_current(site: Site, store: Store, key: NodeKey) -> None:
    """`BootError` unless `key` is the node key the store's rotations end at: a rotation
    recorded but its key file not yet switched (`voltbook-edge keys rotate` cut short) would
    have the box sign with a retired key."""
    schedule = store.key_schedule
    if schedule is not None and key.key_id not in schedule.current:
        raise BootError(
            f"{site.settings.node_key} holds key {key.key_id}, which the store's key rotation "
            f"at seq {schedule.since} retired: run `voltbook-edge keys rotate --config "
            f"{site.settings.path}` again to finish the rotation"
        )


def verifying_key(site: Site) -> VerifyingKey:
    """The node's public key for a command that only verifies: from node.pub
    (`edge.site.node_pub`), so no key passphrase is needed; from the private key, with a
    warning, on a box that has no node.pub yet (the runtime writes it at its next start).
    `SiteConfigError` when node.pub is there but not a key, or neither can be read."""
    key = read_public(site.settings.node_key)
    if key is not None:
        return VerifyingKey(key, public_path(site.settings.node_key))
    log.warning(
        "%s does not exist yet (the runtime writes it at its next start): reading the node's "
        "public key from the private key %s",
        public_path(site.settings.node_key),
        site.settings.node_key,
    )
    return VerifyingKey(read_node_key(site.settings.node_key).public_key)


def node_public_key(site: Site) -> Ed25519PublicKey | None:
    """The node's public key for a reader's open (`Store.open_readonly`: it checks the signed
    balance snapshots and boots from the newest), or None when the node key cannot be read
    here; a pruned store then refuses to open and says why."""
    try:
        return verifying_key(site).key
    except SiteConfigError as exc:
        log.warning("opening the store without the node's public key: %s", exc)
        return None


def _publish(site: Site, key: NodeKey) -> None:
    """Write node.pub when it is missing or not `key`'s (a box provisioned before node.pub, a
    rotation cut short before it, a damaged file); a box that cannot write it still runs."""
    try:
        if publish(site.settings.node_key, key.public_key):
            log.info("wrote the node's public key to %s", public_path(site.settings.node_key))
    except OSError as exc:
        log.warning("cannot write %s (%s): commands that only verify the ledger read the "
                    "private key meanwhile", public_path(site.settings.node_key), exc)  # fmt: skip


@dataclass(slots=True)
class Booted:
    """A runtime and everything it holds open; `close()` releases it all and saves the
    simulated meters, if any."""

    runtime: Runtime
    simulation: Simulation | None
    clock: Clock
    stack: ExitStack = field(default_factory=ExitStack)

    def close(self) -> None:
        try:
            self.stack.close()
        finally:
            if self.simulation is not None:
                self.simulation.save()
            self.runtime.store.close()


def _open_simulation(site: Site, stack: ExitStack) -> Simulation:
    try:
        simulation = find_simulator().open(site)
    except SimulationError as exc:
        raise BootError(str(exc)) from exc
    stack.callback(simulation.close)  # its buses stop with the others; `Booted.close` saves
    return simulation


def _installer(simulation: Simulation, simulated: set[str]) -> Callable[[MeterConfig, int], None]:
    """Install a meter a new configuration adds on its simulated bus (a real bus: the meter
    is there or it is not)."""

    def install(meter: MeterConfig, start_wh: int) -> None:
        if meter.bus in simulated:
            simulation.install(meter, start_wh)

    return install


def _hardware_bus(bus: BusConfig, stack: ExitStack, clock: Clock) -> Bus:
    if bus.kind is BusKind.SERIAL:
        from edge.drivers.reconnect import ReconnectingBus

        assert bus.port is not None
        # A port missing or busy at boot is that bus down (with an alarm at the first cycle),
        # not a runtime that cannot start: the other buses are billed meanwhile.
        serial = ReconnectingBus(bus.port, bus.settings(), monotonic=clock.monotonic)
        stack.callback(serial.close)
        return serial
    from edge.drivers.lora import RadioBus
    from edge.drivers.sx127x import Sx127xRadio

    return RadioBus(Sx127xRadio(bus.radio_config()))


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
    try:
        _check_current(site, store, key)
        _publish(site, key)
        site = reconcile(site, store)  # documents a command stored but the file lacks
        simulated = {b.name for b in site.buses if b.kind is BusKind.SIMULATED}
        simulation = _open_simulation(site, stack) if simulated else None
        if clock is None:
            if simulation is not None and site.simulated:
                clock = SimulatedClock(simulation.time, speed)
            else:
                clock = SystemClock(site.zone)
        in_process = (
            direct if direct is not None else (speed != 1.0 or isinstance(clock, ManualClock))
        )
        buses: dict[str, Bus] = {}
        for bus in site.buses:
            if simulation is not None and bus.name in simulated:
                addresses = [m.address for m in site.meters if m.bus == bus.name]
                buses[bus.name] = simulation.bus(bus, addresses, in_process=in_process)
            else:
                buses[bus.name] = _hardware_bus(bus, stack, clock)
        world: Callable[[], None] | None = None
        install: Callable[[MeterConfig, int], None] | None = None
        if simulation is not None:
            world = _world(simulation, clock)
            install = _installer(simulation, simulated)
        # Buses on their own wire are read in parallel; in-process simulated ones need not be.
        on_wires = len(site.buses) - (len(simulated) if in_process else 0)
        runtime = Runtime(
            site, store, key, buses, clock, world=world, parallel=on_wires > 1, install=install
        )
        booted = Booted(runtime, simulation, clock, stack)
        for recharge in seed:
            runtime.recharge(recharge.account, recharge.fen, recharge.payment, method="seed")
    except BaseException:
        stack.close()
        store.close()
        raise
    return booted


def _world(simulation: Simulation, clock: Clock) -> Callable[[], None]:
    def advance() -> None:
        # Saved BEFORE the meters answer: whatever the runtime reads is already on disk, so a
        # SIGKILL never leaves the ledger ahead of the meters' registers.
        simulation.advance_to(clock.true_now())
        simulation.save()

    return advance
