"""Typed, immutable readings: what a meter said, converted once to our units.

Energy is integer Wh (never float); a float32 Modbus register is converted at the driver with
its quantisation bound recorded in `energy_error_wh`. Instantaneous values (volts, amps, watts,
power factor) are floats: they are measurements, not money.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from ledger.units import Wh


class RelayState(StrEnum):
    OPEN = "open"  # power cut
    CLOSED = "closed"  # power on


class ValveState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    ABNORMAL = "abnormal"


@dataclass(frozen=True, slots=True)
class Reading:
    """One read of one meter. Fields a meter or a block does not provide stay None."""

    address: str
    energy_wh: Wh | None = None  # total active import energy
    energy_by_tariff_wh: tuple[Wh, ...] = ()  # tariff 1..n (sharp, peak, flat, valley)
    energy_error_wh: int = 0  # quantisation bound of energy_wh (float32 registers)
    voltage_v: float | None = None
    current_a: float | None = None
    power_w: float | None = None
    reactive_var: float | None = None
    power_factor: float | None = None
    frequency_hz: float | None = None
    relay: RelayState | None = None
    volume_l: int | None = None  # water meters
    valve: ValveState | None = None
    status_words: tuple[int, ...] = ()
    event_flags: frozenset[str] = field(default_factory=frozenset)
    counters: tuple[tuple[str, int], ...] = ()  # e.g. ("overload_trips", 3)
    meter_time: dt.datetime | None = None

    def merged(self, other: Reading) -> Reading:
        """This reading with every field `other` provides taken from `other`."""
        values = {}
        for name in self.__slots__:
            mine, theirs = getattr(self, name), getattr(other, name)
            values[name] = theirs if theirs not in (None, (), frozenset()) else mine
        values["counters"] = tuple((dict(self.counters) | dict(other.counters)).items())
        values["event_flags"] = self.event_flags | other.event_flags
        return Reading(**values)
