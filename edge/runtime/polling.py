"""Read every meter's reading block: one worker per bus, strictly one request at a time on it.

A round reads one block per meter (`basic` for the billing cycle, a site-defined block for a
block round), then any `also` blocks due at the same point, merged into one `Reading`: a
meter whose first block fails is failed; one whose later block fails keeps what it read and
names that block in `missed`.

A bus is half-duplex: its meters are read one after another. Different buses are independent
wires, so with more than one real bus each gets its own thread (the reads overlap in time, the
way a concentrator with two RS-485 ports works); in-process simulated buses are read in the
calling thread, where threads would only add switching. A meter that fails (timeout, garbled
reply, refusal) is recorded with its error and the round goes on; so is every meter of a bus
whose port is down (`edge.drivers.reconnect.BusDown`, raised at once without I/O).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from edge.drivers.base import Bus, MeterDriver
from edge.drivers.errors import DriverUsageError, MeterError
from edge.drivers.reading import Reading
from edge.site.model import BILLING_BLOCK, MeterConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MeterRead:
    """One meter's result this round: a reading, or the error that stopped it."""

    meter: MeterConfig
    reading: Reading | None
    error: MeterError | None = None
    missed: tuple[str, ...] = ()  # `also` blocks that failed (the reading lacks their values)


def _failed(meter: MeterConfig, block: str, exc: MeterError) -> None:
    log.warning(
        "meter %s (shop %s) on bus %s: %s read failed: %s",
        meter.address,
        meter.shop,
        meter.bus,
        block,
        exc,
    )


def read_bus(
    bus: Bus,
    driver: MeterDriver,
    meters: Sequence[MeterConfig],
    block: str = BILLING_BLOCK,
    progress: Callable[[], None] | None = None,
    *,
    also: Sequence[str] = (),
) -> list[MeterRead]:
    """Each meter's `block` (and `also`), one after another; `progress` is called before
    each meter."""
    out: list[MeterRead] = []
    for meter in meters:
        if progress is not None:
            progress()
        try:
            reading = bus.run(driver.read(meter.address, block), address=meter.address)
        except MeterError as exc:
            _failed(meter, block, exc)
            out.append(MeterRead(meter, None, exc))
            continue
        missed: list[str] = []
        for extra in also:
            try:
                more = bus.run(driver.read(meter.address, extra), address=meter.address)
            except MeterError as exc:
                _failed(meter, extra, exc)
                missed.append(extra)
            else:
                reading = reading.merged(more)
        out.append(MeterRead(meter, reading, None, tuple(missed)))
    return out


def read_meters(
    buses: Mapping[str, Bus],
    drivers: Mapping[str, MeterDriver],
    meters: Sequence[MeterConfig],
    *,
    parallel: bool,
    progress: Callable[[], None] | None = None,
    block: str = BILLING_BLOCK,
    also: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, MeterRead]:
    """Every meter's `block` (and the blocks `also` gives its bus), by address; buses in
    parallel threads when `parallel`.

    `progress` (called from the bus threads too) tells the runner the round is moving: a
    round of 2400-baud meters can outlast systemd's watchdog, and a stuck one must not.
    """
    by_bus: dict[str, list[MeterConfig]] = {}
    for meter in meters:
        by_bus.setdefault(meter.bus, []).append(meter)
    results: list[MeterRead] = []

    def extra(bus: str) -> Sequence[str]:
        return () if also is None else also.get(bus, ())

    if parallel and len(by_bus) > 1:
        with ThreadPoolExecutor(max_workers=len(by_bus), thread_name_prefix="poll") as pool:
            jobs = [
                pool.submit(
                    read_bus, buses[name], drivers[name], group, block, progress, also=extra(name)
                )
                for name, group in by_bus.items()
            ]
            for job in jobs:
                results += job.result()
    else:
        for name, group in by_bus.items():
            results += read_bus(
                buses[name], drivers[name], group, block, progress, also=extra(name)
            )
    return {r.meter.address: r for r in results}


CLOCK_BLOCK = "clock"
CLOCK_SAMPLE = 3  # meters per bus asked for their clock: a consensus, not a census


def read_meter_clocks(
    buses: Mapping[str, Bus],
    drivers: Mapping[str, MeterDriver],
    meters: Sequence[MeterConfig],
    zone: dt.tzinfo,
    sample: int = CLOCK_SAMPLE,
) -> tuple[dt.datetime, ...]:
    """The clocks of a few meters per bus (protocols without a clock block are skipped), as
    aware times in the site's zone: a second opinion for the clock guard (a Pi has no RTC)."""
    by_bus: dict[str, list[MeterConfig]] = {}
    for meter in meters:
        by_bus.setdefault(meter.bus, []).append(meter)
    times: list[dt.datetime] = []
    for name, group in by_bus.items():
        for meter in group[:sample]:
            try:
                conversation = drivers[name].read(meter.address, CLOCK_BLOCK)
            except DriverUsageError:
                break  # this protocol has no clock block: none of this bus's meters has one
            try:
                reading = buses[name].run(conversation, address=meter.address)
            except MeterError as exc:
                log.warning("meter %s: clock read failed: %s", meter.address, exc)
                continue
            if reading.meter_time is not None:
                when = reading.meter_time
                times.append(when if when.tzinfo else when.replace(tzinfo=zone))
    return tuple(times)
