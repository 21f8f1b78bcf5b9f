"""The simulated meter's own malicious-load recognition (model `voltbook-sim`).

A meter whose model keeps a malicious-load window (`edge.drivers.dlt645_vendor`) judges its own
load continuously, not once a poll: once the concentrator has written the window
(`MeterState.parameters`, registers by item name), a total load inside it for the written delay
trips the meter's relay and counts the trip in `malicious_load_trips`, which the concentrator
reads back. `Load.advance` calls `guard` for every step it integrates, so the trip falls at the
second the delay runs out and no energy is counted after it. A keep-power meter never trips.
"""

from __future__ import annotations

import math
from typing import Final

from demo.sim.state import MeterState
from edge.drivers.dlt645_items import to_reading_units
from edge.drivers.dlt645_vendor import (
    MALICIOUS_LOAD_MAPS,
    SIMULATED_MODEL,
    MaliciousLoadSettings,
)

MAP: Final = MALICIOUS_LOAD_MAPS[SIMULATED_MODEL]
TRIPS: Final = MAP.trips.name


def written_window(state: MeterState) -> MaliciousLoadSettings | None:
    """The window the concentrator wrote, or None while any of its parameters is missing."""
    registers = state.parameters
    if any(item.name not in registers for item in MAP.parameters):
        return None
    low_w, high_w, low_pf, high_pf = (
        float(to_reading_units(item, registers[item.name])) for item in MAP.parameters[:4]
    )
    return MaliciousLoadSettings(low_w, high_w, low_pf, high_pf, registers[MAP.delay.name])


def guard(state: MeterState, power_w: float, reactive_var: float, seconds: float) -> float:
    """Judge `seconds` of this load; returns how many of them the relay stayed closed (all of
    them unless the meter tripped, counting the trip, part-way through)."""
    window = written_window(state) if state.parameters else None  # most meters: none
    if window is None:
        state.suspect_s = 0.0
        return seconds
    apparent = math.hypot(power_w, reactive_var)
    pf = power_w / apparent if apparent else 0.0
    if (
        state.keep_power
        or not state.relay_closed
        or power_w <= 0
        or not (window.min_w <= power_w <= window.max_w and window.min_pf <= pf <= window.max_pf)
    ):
        state.suspect_s = 0.0
        return seconds
    needed = window.delay_s - state.suspect_s
    if needed > seconds:
        state.suspect_s += seconds
        return seconds
    state.suspect_s = 0.0
    state.relay_closed = False
    state.counters[TRIPS] = state.counters.get(TRIPS, 0) + 1
    return max(0.0, needed)
