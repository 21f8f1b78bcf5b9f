"""Read success as data: per round and per bus, how many meters were asked, read and failed.

Every cycle stores one compact `read_round` event, which goes up to the cloud with the others:
the round's totals and each bus's attempted / read / failed / rate. A bus whose rate falls below
the site's `read_success_min` (`[site]`, default 0.9) raises a `read_success_low` alarm once, and
a `read_success_ok_again` event when it recovers. A bus that is down is counted (every meter
failed) but raises no alarm of its own: its `bus_down` alarm says it. Which buses are low is
kept in memory, so after a restart a bus that is still low raises its alarm once more.

Site-defined blocks (`[[blocks]]`) are tallied per block and bus between cycles (`BlockTally`:
rounds, attempted, read), whether read in their own rounds or with the billing read, and the
next `read_round` event carries the tallies under `blocks`: a 30-second block costs no event
of its own. They raise no alarm: the billing read's rate does.

Also here: a float32 energy register (Modbus) loses resolution as it grows; the driver records
the bound in `Reading.energy_error_wh`. Once that bound passes `QUANTISATION_LIMIT_WH` (0.1 kWh)
a reading could be off by more than that, so an `energy_quantisation` alarm is raised, once per
meter (and run).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Set
from dataclasses import dataclass, field

from edge.rules.decisions import Severity
from edge.runtime.accounting import scaled
from edge.runtime.events import RuntimeKind, runtime_event
from edge.runtime.polling import MeterRead
from edge.site.model import Site
from edge.store import Event

QUANTISATION_LIMIT_WH = 100  # 0.1 kWh


@dataclass(frozen=True, slots=True)
class BusReads:
    """One bus's round (or, with `bus` "*", the whole round's)."""

    bus: str
    attempted: int
    read: int
    down: bool = False

    @property
    def failed(self) -> int:
        return self.attempted - self.read

    @property
    def rate(self) -> float:
        return self.read / self.attempted if self.attempted else 1.0

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "bus": self.bus,
            "attempted": self.attempted,
            "read": self.read,
            "failed": self.failed,
            "rate": round(self.rate, 4),
        }
        if self.down:
            out["down"] = True
        return out


def bus_reads(reads: Iterable[MeterRead], down: Collection[str]) -> list[BusReads]:
    """Each bus's counts, in bus-name order."""
    attempted: dict[str, int] = {}
    read: dict[str, int] = {}
    for result in reads:
        bus = result.meter.bus
        attempted[bus] = attempted.get(bus, 0) + 1
        read[bus] = read.get(bus, 0) + (result.reading is not None)
    return [BusReads(bus, attempted[bus], read[bus], bus in down) for bus in sorted(attempted)]


@dataclass(slots=True)
class BlockTally:
    """One block's reads since the last cycle: rounds, and per bus attempted and read."""

    rounds: int = 0
    attempted: dict[str, int] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)

    def copy(self) -> BlockTally:
        return BlockTally(self.rounds, dict(self.attempted), dict(self.read))

    def add(self, buses: Iterable[BusReads]) -> None:
        self.rounds += 1
        for b in buses:
            self.attempted[b.bus] = self.attempted.get(b.bus, 0) + b.attempted
            self.read[b.bus] = self.read.get(b.bus, 0) + b.read

    def to_json(self) -> dict[str, object]:
        buses = [BusReads(bus, self.attempted[bus], self.read[bus]) for bus in sorted(self.read)]
        total = round_total(buses)
        return {
            "rounds": self.rounds,
            "attempted": total.attempted,
            "read": total.read,
            "rate": round(total.rate, 4),
            "buses": [b.to_json() for b in buses],
        }


def merged_reads(reads: Iterable[MeterRead], block: str, buses: Collection[str]) -> list[BusReads]:
    """A block read with the billing read, per bus: attempted where the billing read worked."""
    attempted: dict[str, int] = {}
    read: dict[str, int] = {}
    for result in reads:
        bus = result.meter.bus
        if bus in buses and result.reading is not None:
            attempted[bus] = attempted.get(bus, 0) + 1
            read[bus] = read.get(bus, 0) + (block not in result.missed)
    return [BusReads(bus, attempted[bus], read[bus]) for bus in sorted(attempted)]


def round_total(buses: Iterable[BusReads]) -> BusReads:
    buses = list(buses)
    return BusReads("*", sum(b.attempted for b in buses), sum(b.read for b in buses))


def round_event(
    site: Site,
    now: dt.datetime,
    buses: list[BusReads],
    blocks: Mapping[str, BlockTally] | None = None,
) -> Event:
    total = round_total(buses)
    detail: dict[str, object] = {
        "attempted": total.attempted,
        "read": total.read,
        "failed": total.failed,
        "rate": round(total.rate, 4),
        "buses": [b.to_json() for b in buses],
    }
    if blocks:
        detail["blocks"] = {name: blocks[name].to_json() for name in sorted(blocks)}
    return runtime_event(
        site,
        now,
        RuntimeKind.READ_ROUND,
        f"{total.read} of {total.attempted} meters read ({total.rate:.0%})",
        detail=detail,
    )


def low_rate_events(
    site: Site, now: dt.datetime, buses: list[BusReads], minimum: float, were_low: Set[str]
) -> tuple[list[Event], frozenset[str]]:
    """Alarms for buses that fell below `minimum`, events for those back at or above it; and
    the buses low now (a down bus is neither: its own alarm covers it)."""
    events = []
    low = frozenset(b.bus for b in buses if not b.down and b.rate < minimum)
    for bus in buses:
        if bus.bus in low and bus.bus not in were_low:
            events.append(
                runtime_event(
                    site,
                    now,
                    RuntimeKind.READ_SUCCESS_LOW,
                    f"bus {bus.bus}: {bus.read} of {bus.attempted} meters read "
                    f"({bus.rate:.0%}, below {minimum:.0%})",
                    alarm=Severity.WARNING,
                    detail={**bus.to_json(), "minimum": minimum},
                )
            )
        elif bus.bus in were_low and bus.bus not in low and not bus.down:
            events.append(
                runtime_event(
                    site,
                    now,
                    RuntimeKind.READ_SUCCESS_OK,
                    f"bus {bus.bus}: {bus.read} of {bus.attempted} meters read ({bus.rate:.0%})",
                    detail={**bus.to_json(), "minimum": minimum},
                )
            )
    return events, low


def quantisation_events(
    site: Site, now: dt.datetime, reads: Iterable[MeterRead], alarmed: Set[str]
) -> tuple[list[Event], frozenset[str]]:
    """An alarm for each meter whose energy register's error bound newly passes the limit;
    and the meters alarmed so far."""
    events = []
    now_alarmed = set(alarmed)
    for result in reads:
        if result.reading is None:
            continue
        reading = scaled(result.reading, result.meter.multiplier)  # behind its CT, as billed
        if reading.energy_error_wh <= QUANTISATION_LIMIT_WH:
            continue
        if result.meter.address in now_alarmed:
            continue
        now_alarmed.add(result.meter.address)
        events.append(
            runtime_event(
                site,
                now,
                RuntimeKind.ENERGY_QUANTISATION,
                f"the energy register reads {reading.energy_wh} Wh to within "
                f"±{reading.energy_error_wh} Wh (float32): more than "
                f"{QUANTISATION_LIMIT_WH} Wh; bill from an integer register or reset the meter",
                meter=result.meter,
                alarm=Severity.WARNING,
                detail={
                    "energy_wh": reading.energy_wh,
                    "error_wh": reading.energy_error_wh,
                    "limit_wh": QUANTISATION_LIMIT_WH,
                },
            )
        )
    return events, frozenset(now_alarmed)
