"""The commissioning check of a whole site: for each bus, who answers, how well, and whether
each relay obeys; the result is the report `ledger.commissioning` describes (unsigned).

It drives the meters directly and stores nothing: it runs with the runtime stopped (the CLI
takes the store's writer lock for that). A relay test switches declared meters only (an
undeclared meter may be anyone's supply) and leaves the relay as it found it: a closed relay
is tripped then closed, an open one closed then tripped, each confirmed by the driver's
read-back and by one more `basic` read; when a step fails the first state is restored if the
meter lets us.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from edge.commissioning.finding import MODBUS_UNITS, Found, find_meters
from edge.drivers.base import MeterDriver
from edge.drivers.discovery import DEFAULT_TIME_LIMIT, ProbingBus
from edge.drivers.dlt645_meter import REPLY_WINDOW
from edge.drivers.errors import MeterError, UnsupportedOperation
from edge.drivers.reading import Reading
from edge.drivers.registry import protocol
from edge.site.model import BILLING_BLOCK, BusConfig, MeterConfig, Site
from ledger.commissioning import FORMAT

log = logging.getLogger(__name__)

Action = Literal["trip", "close"]


@dataclass(frozen=True, slots=True)
class Options:
    reads: int = 3  # reads of `basic` per meter
    relay_test: bool = False
    window: float = REPLY_WINDOW  # DL/T 645 search: how long each probe listens
    time_limit: float = DEFAULT_TIME_LIMIT  # DL/T 645 search, per bus
    modbus_units: int = MODBUS_UNITS


@dataclass(slots=True)
class _Reads:
    ok: int = 0
    tried: int = 0
    last: Reading | None = None
    error: str = ""


def commission(
    site: Site,
    buses: Mapping[str, ProbingBus],
    *,
    now: dt.datetime,
    version: str,
    options: Options = Options(),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Check every bus of `site` on `buses` (by name); the report, unsigned."""
    say = progress or (lambda message: None)
    bus_rows: list[dict[str, Any]] = []
    meter_rows: list[dict[str, Any]] = []
    for config in site.buses:
        bus_row, meters = _bus(site, config, buses[config.name], options, say)
        bus_rows.append(bus_row)
        meter_rows.extend(meters)
    return {
        "format": FORMAT,
        "node": site.settings.node,
        "site": site.settings.name[:300],
        "taken_at": now.isoformat(timespec="seconds"),
        "version": version,
        "reads": options.reads,
        "relay_test": options.relay_test,
        "buses": bus_rows,
        "meters": meter_rows,
    }


def _bus(
    site: Site,
    config: BusConfig,
    bus: ProbingBus,
    options: Options,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    declared = {m.address: m for m in site.meters if m.bus == config.name}
    say(f"bus {config.name}: looking for meters ({config.protocol})")
    error = ""
    try:
        found = find_meters(
            bus,
            config,
            list(declared),
            window=options.window,
            time_limit=options.time_limit,
            modbus_units=options.modbus_units,
            progress=lambda message: say(f"bus {config.name}: {message}"),
        )
    except MeterError as exc:  # the port will not open, the radio fails: the bus's fault
        error = str(exc)[:300]
        say(f"bus {config.name}: {error}")
        found = Found(frozenset(), "declared-only", False, 0)
    driver = config.driver()
    water = protocol(config.protocol).kind == "water"
    rows = []
    for address in sorted(set(declared) | found.addresses):
        meter = declared.get(address)
        reads = _read(bus, driver, address, options.reads)
        if meter is None:
            status = "extra"
        elif address in found.addresses or reads.ok:
            status = "found"  # a meter the search missed but that answers its address is there
        else:
            status = "missing"
        relay, detail = "not_tested", ""
        if reads.last is None:
            relay = "not_read"
        elif options.relay_test and meter is None:
            detail = "not declared: nobody said whose supply this meter switches"
        elif options.relay_test:
            relay, detail = _relay_test(bus, driver, address, reads.last, water=water)
        rows.append(
            _meter_row(
                config,
                address,
                meter,
                status=status,
                reads=reads,
                relay=relay,
                detail=detail,
                water=water,
            )
        )
        say(f"bus {config.name}: meter {address} {status}, read {reads.ok}/{reads.tried}")
    bus_row = {
        "bus": config.name,
        "protocol": config.protocol,
        "discovery": found.method,
        "complete": found.complete and not error,
        "probes": found.probes,
        "reads_ok": sum(r["reads_ok"] for r in rows),
        "reads_tried": sum(r["reads_tried"] for r in rows),
        "found": sum(r["status"] == "found" for r in rows),
        "missing": sum(r["status"] == "missing" for r in rows),
        "extra": sum(r["status"] == "extra" for r in rows),
        "error": error,
    }
    return bus_row, rows


def _read(bus: ProbingBus, driver: MeterDriver, address: str, times: int) -> _Reads:
    reads = _Reads()
    for _ in range(times):
        reads.tried += 1
        try:
            reads.last = bus.run(driver.read(address, BILLING_BLOCK), address=address)
        except MeterError as exc:
            reads.error = str(exc)[:300]
            continue
        reads.ok += 1
    return reads


def _meter_row(
    config: BusConfig,
    address: str,
    meter: MeterConfig | None,
    *,
    status: str,
    reads: _Reads,
    relay: str,
    detail: str,
    water: bool,
) -> dict[str, Any]:
    register: int | None = None
    if reads.last is not None:
        register = reads.last.volume_l if water else reads.last.energy_wh
        if register is not None and meter is not None and not water:
            register *= meter.multiplier  # what billing counts: the CT ratio applied
    return {
        "address": address,
        "bus": config.name,
        "protocol": config.protocol,
        "status": status,
        "shop": None if meter is None else meter.shop,
        "account": None if meter is None else meter.account,
        "reads_ok": reads.ok,
        "reads_tried": reads.tried,
        "register": register,
        "unit": "L" if water else "Wh",
        "relay": relay,
        "relay_detail": detail[:300],
        "error": reads.error,
    }


def _supply_state(action: Action, water: bool) -> str:
    """The state a confirmed `action` leaves: trip cuts the supply (relay open, valve closed)."""
    if water:
        return "closed" if action == "trip" else "open"
    return "open" if action == "trip" else "closed"


def _relay_test(
    bus: ProbingBus, driver: MeterDriver, address: str, before: Reading, *, water: bool
) -> tuple[str, str]:
    state = before.valve if water else before.relay
    if state is None:
        return "no_relay", "the meter reports no relay state"
    supply_on = state.value == ("open" if water else "closed")
    steps: tuple[Action, Action] = ("trip", "close") if supply_on else ("close", "trip")
    for step in steps:
        problem = _step(bus, driver, address, step, water=water)
        if problem == "unsupported":
            return "no_relay", "the driver may not command this meter's relay"
        if problem:
            if step == steps[0]:
                _step(bus, driver, address, steps[1], water=water)  # put it back if we can
            return "failed", f"{step}: {problem}"
    return "ok", f"{steps[0]} and {steps[1]} confirmed by read-back"


def _step(bus: ProbingBus, driver: MeterDriver, address: str, step: Action, *, water: bool) -> str:
    """'' when the meter confirmed `step` and a new reading agrees; else what went wrong."""
    wanted = _supply_state(step, water)
    try:
        state = bus.run(driver.relay(address, step), address=address)
        if state.value != wanted:
            return f"the meter reports {state.value}, not {wanted}"
        reading: Reading = bus.run(driver.read(address, BILLING_BLOCK), address=address)
    except UnsupportedOperation:
        return "unsupported"
    except MeterError as exc:
        log.warning("meter %s: relay %s: %s", address, step, exc)
        return str(exc)
    seen = reading.valve if water else reading.relay
    if seen is None or seen.value != wanted:
        return f"the reading after it shows {None if seen is None else seen.value}"
    return ""
