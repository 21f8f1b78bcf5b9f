"""The buses a commissioning run talks on: the site's own, opened for this run only.

A serial bus is a plain `SerialBus` (no reconnecting: a port that fails is reported on its
bus), a radio bus the SX127x, and a simulated bus the simulator's in-process bus serving the
declared meters and every simulated meter of the bus's protocol that no bus declares (the
extra meters an installer may find), on the first simulated bus of that protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import TypeVar

from edge.drivers.base import Conversation
from edge.drivers.discovery import ProbingBus
from edge.drivers.errors import MeterError
from edge.site.model import BusConfig, BusKind, Site
from edge.site.simulation import Simulation, find_simulator

T = TypeVar("T")


class BrokenBus:
    """A bus that could not be opened: every conversation fails with why."""

    def __init__(self, error: MeterError) -> None:
        self.error = error

    def run(self, conversation: Conversation[T], *, address: str, retries: int | None = None) -> T:
        conversation.close()
        raise self.error


def open_buses(
    site: Site, stack: ExitStack, *, byte_gap: float
) -> tuple[dict[str, ProbingBus], Simulation | None]:
    """Every bus of `site` by name (closed by `stack`), and the simulation if any."""
    simulation: Simulation | None = None
    if any(b.kind is BusKind.SIMULATED for b in site.buses):
        simulation = find_simulator().open(site)
        stack.callback(simulation.close)
        stack.callback(simulation.save)  # a relay test moved simulated relays: keep them
    placed = {m.address for m in site.meters}
    strays_taken: set[str] = set()
    buses: dict[str, ProbingBus] = {}
    for config in site.buses:
        declared = [m.address for m in site.meters if m.bus == config.name]
        if config.kind is BusKind.SIMULATED:
            assert simulation is not None
            strays = [
                a
                for a in simulation.meters_of(config.protocol)
                if a not in placed and a not in strays_taken
            ]
            strays_taken.update(strays)
            opened = simulation.bus(config, [*declared, *strays], in_process=True)
            buses[config.name] = opened  # type: ignore[assignment]  # in-process buses probe
        else:
            buses[config.name] = _hardware(config, stack, byte_gap)
    return buses, simulation


def _hardware(config: BusConfig, stack: ExitStack, byte_gap: float) -> ProbingBus:
    opener: Callable[[], ProbingBus]
    if config.kind is BusKind.SERIAL:
        from edge.drivers.bus import SerialBus

        assert config.port is not None
        port = config.port

        def opener() -> ProbingBus:
            serial = SerialBus(port, config.settings(), byte_gap=byte_gap)
            stack.callback(serial.close)
            return serial
    else:
        from edge.drivers.lora import RadioBus
        from edge.drivers.sx127x import Sx127xRadio

        def opener() -> ProbingBus:
            return RadioBus(Sx127xRadio(config.radio_config()))

    try:
        return opener()
    except MeterError as exc:
        return BrokenBus(exc)
