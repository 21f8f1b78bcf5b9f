"""Malicious-load recognition in the meter: its window written, its own trips read back.

A meter whose model keeps a malicious-load window (`MeterConfig.malicious_load_map`, a row of
`edge.drivers.dlt645_vendor`) judges its own load within seconds. The runtime

- writes it the window the protection policy configures (`wanted`): when the meter is new to
  the site, its model or the policy changed, or the last write failed. What a meter confirmed
  is remembered in the store (`MeterWindowState` under `rt:meter_window:<address>`, saved in
  the cycle's transaction), so nothing is written again while nothing changed. A failure is an
  alarm at the first attempt (`meter_window_failed`) and is retried every cycle (quietly) until
  it succeeds (`meter_window_written`). A meter not read this cycle is not written to.
- reads back the meter's own trip counter with every reading (`with_meter_trips`), so the
  protection rule (`edge.rules.protection`, `METER_TRIPS`) records a meter-side trip as a
  malicious-load trip, holds the relay open and counts it towards the lockout.

A model without such a map gets no writes: the concentrator's rule judges its readings alone
(it judges every meter's readings in any case). The meter holds one window: a policy with none,
or with several, writes the empty window (0 W..0 W, which recognises nothing), and the rule
judges them all.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from edge.drivers.base import Bus, MeterDriver
from edge.drivers.dlt645_meter import Dlt645Driver
from edge.drivers.dlt645_vendor import MaliciousLoadSettings
from edge.drivers.errors import MeterError, MeterUnauthorised
from edge.rules.decisions import Severity
from edge.rules.protection import ProtectionPolicy
from edge.runtime.events import RuntimeKind, runtime_event
from edge.runtime.polling import MeterRead
from edge.runtime.state import StateTable
from edge.site.model import MeterConfig, Site
from edge.store import Event, Transaction

log = logging.getLogger(__name__)

METER_DELAY_S = 5  # how long the meter lets a load sit in the window before it trips
EMPTY_WINDOW = MaliciousLoadSettings(0.0, 0.0, 0.0, 0.0, METER_DELAY_S)


@dataclass(frozen=True, slots=True)
class MeterWindowState:
    """What the meter confirmed (`model`, `written`), and how its last writes went."""

    model: str | None = None
    written: MaliciousLoadSettings | None = None
    failures: int = 0  # consecutive cycles whose write failed
    last_error: str = ""


def meter_window_key(address: str) -> str:
    return f"rt:meter_window:{address}"


def wanted(meter: MeterConfig, policy: ProtectionPolicy) -> MaliciousLoadSettings | None:
    """The window `meter` should hold; None if its model keeps none (nothing to write)."""
    if meter.malicious_load_map is None:
        return None
    if len(policy.windows) != 1:
        return EMPTY_WINDOW
    (window,) = policy.windows
    return MaliciousLoadSettings(
        window.min_w, window.max_w, window.min_pf, window.max_pf, METER_DELAY_S
    )


def load_states(table: StateTable, site: Site) -> dict[str, MeterWindowState]:
    """The stored state of every meter of `site` whose model keeps a window."""
    return {
        m.address: table.load(meter_window_key(m.address), MeterWindowState, MeterWindowState())
        for m in site.meters
        if m.malicious_load_map is not None
    }


def save_states(table: StateTable, tx: Transaction, states: Mapping[str, MeterWindowState]) -> None:
    for address, state in states.items():
        table.save(tx, meter_window_key(address), state)


def with_meter_trips(
    buses: Mapping[str, Bus], drivers: Mapping[str, MeterDriver], reads: Mapping[str, MeterRead]
) -> dict[str, MeterRead]:
    """`reads` with each window-keeping meter's own trip counter added to its reading (read
    now unless the reading has it already, e.g. from an `abnormal_trips` block). A meter whose
    counter cannot be read counts as unread this cycle: with its relay open for a reason the
    runtime cannot see, the rules must not close it. Call it on any round's reads before the
    rules see them (whatever blocks the round read): it costs one round trip per such meter
    only when no block brought the counter."""
    out = dict(reads)
    for address, read in reads.items():
        row = read.meter.malicious_load_map
        driver = drivers.get(read.meter.bus)
        reading = read.reading
        if row is None or reading is None or not isinstance(driver, Dlt645Driver):
            continue
        if row.trips.name in dict(reading.counters):
            continue
        try:
            counted = buses[read.meter.bus].run(
                driver.read_items(address, (row.trips,)), address=address
            )
        except MeterError as exc:
            log.warning("meter %s: its own trip counter cannot be read: %s", address, exc)
            out[address] = MeterRead(read.meter, None, exc)
        else:
            out[address] = MeterRead(read.meter, reading.merged(counted))
    return out


def write_windows(
    site: Site,
    buses: Mapping[str, Bus],
    drivers: Mapping[str, MeterDriver],
    *,
    states: Mapping[str, MeterWindowState],
    reads: Mapping[str, MeterRead],
    now: dt.datetime,
) -> tuple[dict[str, MeterWindowState], list[Event]]:
    """Write each read meter the window it should hold and does not; new states and events."""
    out = dict(states)
    events: list[Event] = []
    for meter in site.meters:
        target = wanted(meter, site.rules.protection)
        row = meter.malicious_load_map
        driver = drivers.get(meter.bus)
        read = reads.get(meter.address)
        if target is None or row is None or not isinstance(driver, Dlt645Driver):
            continue
        state = out.get(meter.address, MeterWindowState())
        if (state.model, state.written) == (meter.model, target):
            continue
        if read is None or read.reading is None:
            continue  # not reachable this cycle: its read alarm says so; written once it is
        detail = {"model": meter.model, "window": _describe(target)}
        try:
            buses[meter.bus].run(
                driver.write_malicious_load(meter.address, row, target), address=meter.address
            )
        except MeterError as exc:
            failures = state.failures + 1
            out[meter.address] = MeterWindowState(state.model, state.written, failures, str(exc))
            if failures == 1:
                # Wrong credentials stay wrong until someone edits site.toml.
                unauthorised = isinstance(exc, MeterUnauthorised)
                events.append(
                    runtime_event(
                        site,
                        now,
                        RuntimeKind.METER_WINDOW_FAILED,
                        f"malicious-load window not written (retried every cycle): {exc}",
                        meter=meter,
                        alarm=Severity.CRITICAL if unauthorised else Severity.WARNING,
                        detail=detail,
                    )
                )
            continue
        out[meter.address] = MeterWindowState(meter.model, target)
        events.append(
            runtime_event(
                site,
                now,
                RuntimeKind.METER_WINDOW_WRITTEN,
                f"malicious-load window written: {_describe(target)}"
                + (f" (after {state.failures} failed cycles)" if state.failures else ""),
                meter=meter,
                detail=detail,
            )
        )
    return out, events


def _describe(window: MaliciousLoadSettings) -> str:
    if window == EMPTY_WINDOW:
        return "empty (the meter recognises nothing; the concentrator judges)"
    return (
        f"{window.min_w:g}-{window.max_w:g} W at PF {window.min_pf:g}-{window.max_pf:g}, "
        f"held {window.delay_s} s"
    )
