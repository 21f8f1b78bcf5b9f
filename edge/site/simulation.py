"""The seam to a meter simulator: what a site's `simulated` buses need, and how it is found.

The concentrator never imports a simulator. A site whose site.toml declares a `simulated` bus
looks one up, then and only then, in the `voltbook.simulation` entry point group (the `demo`
package declares `demo = "demo.sim.simulation:SIMULATOR"` in pyproject.toml), so a deployed
concentrator with real buses needs no simulator at all:

- a `Simulator` checks the site's simulated meters while the site loads, before anything is
  opened (an unknown load profile is refused like any other bad document), and opens the
  site's simulated building at boot;
- a `Simulation` is that open building: the time its meters have reached (a simulated clock
  resumes from it), a bus serving the meters of a bus configuration (in-process, or on a pty
  with real wire timing; over a simulated LoRa radio for a bus with `radio = "lora"`), the
  installation of a meter a new configuration adds, the meters of a protocol (declared or not:
  what commissioning may find), the world advanced and saved before each read, saving, and
  `close()`.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Final, Protocol

from edge.drivers.base import Bus
from edge.site.model import BusConfig, MeterConfig, Site

ENTRY_POINT_GROUP: Final = "voltbook.simulation"


class SimulationError(Exception):
    """The site's simulated meters cannot be used; the message says why and what to do."""


class SimulatorUnavailable(SimulationError):
    """No simulator, or more than one, is installed for a site with `simulated` buses."""


class Simulation(Protocol):
    """A site's simulated meters, open: what `edge.runtime.boot` serves simulated buses with."""

    @property
    def time(self) -> dt.datetime:
        """The simulated time the meters have reached (a simulated clock resumes from it)."""
        ...

    def bus(self, bus: BusConfig, addresses: Sequence[str], *, in_process: bool) -> Bus:
        """A bus serving these meters of `bus`: in-process without wire timing, or (not
        `in_process`) a serial port on a pty with real wire timing; a bus with a `radio`
        (`"lora"`) is a radio bus over simulated air instead, on simulated or real time the
        same way; `close()` stops it."""
        ...

    def meters_of(self, protocol: str) -> Sequence[str]:
        """The addresses of every simulated meter of `protocol`, declared or not (what a
        commissioning search may find on a simulated bus: `edge.commissioning`)."""
        ...

    def install(self, meter: MeterConfig, start_wh: int) -> None:
        """Put a meter a new configuration adds (a swap's new meter, its register at
        `start_wh`) on its simulated bus: what a technician does on a real site."""
        ...

    def advance_to(self, now: dt.datetime) -> None:
        """Let the meters' loads run until `now` (simulated time never runs backwards)."""
        ...

    def save(self) -> None:
        """Write the meters' state (registers, relays, clock) where the next boot finds it."""
        ...

    def close(self) -> None:
        """Stop every bus `bus()` started (without saving: a boot that failed saves nothing)."""
        ...


class Simulator(Protocol):
    """What the `voltbook.simulation` entry point names."""

    def check_meter(self, meter: MeterConfig) -> None:
        """Raise ValueError (what is wrong, no file named) if `meter` cannot be simulated,
        e.g. its load profile is unknown."""
        ...

    def open(self, site: Site) -> Simulation:
        """The site's simulated building, opened (or made, on a first boot) with every meter
        its simulated buses have; SimulationError if what is on disk is unusable."""
        ...


@functools.cache
def find_simulator() -> Simulator:
    """The one simulator installed; `SimulatorUnavailable` says what to do if there is none."""
    from importlib.metadata import entry_points  # only sites with a simulated bus pay for it

    found = entry_points(group=ENTRY_POINT_GROUP)
    if not found:
        raise SimulatorUnavailable(
            f"no meter simulator is installed (no {ENTRY_POINT_GROUP!r} entry point): install "
            "Voltbook with its demo package (`pip install -e` on the checkout; on a rehearsal "
            "or test box, a bundle built `voltbook-fw bundle --with-simulator`) or make every "
            "bus real"
        )
    if len(found) > 1:
        names = ", ".join(sorted(f"{e.name} = {e.value}" for e in found))
        raise SimulatorUnavailable(
            f"several meter simulators are installed ({names}): uninstall all but one"
        )
    (entry,) = found
    try:
        simulator: Simulator = entry.load()
    except (ImportError, AttributeError) as exc:
        raise SimulatorUnavailable(
            f"the meter simulator {entry.value} cannot be loaded ({exc}): reinstall Voltbook"
        ) from exc
    return simulator
