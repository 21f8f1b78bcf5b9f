"""Which meters answer on one bus: the discovery each protocol allows.

- DL/T 645 (both versions): the address search of `edge.drivers.discovery` (wildcard
  read-address, then address suffixes), which finds meters nobody declared.
- Modbus RTU: a unit scan, one `basic` read per unit id from 1 to `modbus_units` (and every
  declared unit beyond), without retries: a unit that answers is there.
- A radio bus: only the declared addresses are asked (a wildcard over the air would wake
  every meter in range, whoever's network it is on).
- CJ/T 188: the wildcard read-address finds the meter when it is alone on the bus; with
  several, the replies collide, so each declared address is asked instead (a water meter
  nobody declared on a shared bus is not found: the protocol has no search).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Final

from edge.drivers.base import MeterDriver
from edge.drivers.cjt188 import CJT188
from edge.drivers.cjt188_items import WILDCARD_ADDRESS
from edge.drivers.discovery import ProbingBus, discover
from edge.drivers.dlt645_meter import Dlt645Driver
from edge.drivers.errors import DriverUsageError, MeterError
from edge.drivers.registry import protocol
from edge.site.model import BILLING_BLOCK, BusConfig, BusKind

log = logging.getLogger(__name__)

MODBUS_UNITS: Final = 32  # units scanned by default (the declared ones are always asked)


@dataclass(frozen=True, slots=True)
class Found:
    addresses: frozenset[str]
    method: str  # one of ledger.commissioning.DISCOVERY
    complete: bool  # False: the search stopped at its time limit
    probes: int


def find_meters(
    bus: ProbingBus,
    config: BusConfig,
    declared: Collection[str],
    *,
    window: float,
    time_limit: float,
    modbus_units: int = MODBUS_UNITS,
    progress: Callable[[str], None] | None = None,
) -> Found:
    """The meters that answer on `bus` (configured as `config`)."""
    driver = config.driver()
    addressing = protocol(config.protocol).addressing
    if config.kind is BusKind.LORA or config.radio is not None:
        # Over the air a wildcard would wake every meter in range, on anyone's network.
        return _ask_each(bus, driver, sorted(declared), "declared-only")
    if addressing == "dlt645":
        assert isinstance(driver, Dlt645Driver)
        found = discover(
            bus,
            driver,
            window=window,
            time_limit=time_limit,
            progress=progress,
        )
        return Found(frozenset(found.addresses), "dlt645-search", found.complete, found.probes)
    if addressing == "modbus":
        units = {str(u) for u in range(1, modbus_units + 1)} | set(declared)
        return _ask_each(bus, driver, sorted(units, key=int), "modbus-unit-scan")
    if addressing == "cjt188":
        assert isinstance(driver, CJT188)
        alone: set[str] = set()
        probes = 1
        try:
            alone.add(bus.run(driver.read_address(), address=WILDCARD_ADDRESS))
        except MeterError as exc:  # silence, or several meters answering at once
            log.info("bus %s: wildcard read-address: %s", config.name, exc)
        asked = _ask_each(bus, driver, sorted(set(declared) - alone), "cjt188-address")
        return Found(asked.addresses | alone, "cjt188-address", True, probes + asked.probes)
    raise DriverUsageError(f"bus {config.name}: no discovery for protocol {config.protocol}")


def _ask_each(bus: ProbingBus, driver: MeterDriver, addresses: list[str], method: str) -> Found:
    """The addresses whose meter answers one `basic` read (no retries)."""
    there = set()
    for address in addresses:
        try:
            bus.run(driver.read(address, BILLING_BLOCK), address=address, retries=0)
        except DriverUsageError:
            raise
        except MeterError:
            continue
        there.add(address)
    return Found(frozenset(there), method, True, len(addresses))
