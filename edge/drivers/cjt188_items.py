"""CJ/T 188-2004 protocol knowledge as data: meter types, control codes, data identifiers,
reply layouts, units, status bits and valve commands.

`edge.drivers.cjt188` (the codec and the driver) and `demo.sim.cjt188_responder` read these
tables; neither branches on a data identifier or a unit code. Facts come from
the standard (sources: docs/architecture.md §11).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from fractions import Fraction
from types import MappingProxyType

from edge.drivers.reading import ValveState

METER_TYPES: Mapping[int, str] = MappingProxyType(
    {
        0x10: "cold water",
        0x11: "hot water",
        0x12: "drinking water",
        0x13: "reclaimed water",
        0x20: "heat",
        0x30: "gas",
        0x40: "electricity",
        0xAA: "any",
    }
)
ANY_METER_TYPE = 0xAA
COLD_WATER = 0x10
WILDCARD_ADDRESS = "AAAAAAAAAAAAAA"  # every meter on the bus answers (read address)


class Control(IntEnum):
    """Request control codes. A reply sets D7 (0x80); an error reply sets D6 as well (0x40)."""

    READ = 0x01
    READ_ADDRESS = 0x03
    WRITE = 0x04
    READ_KEY_VERSION = 0x09
    WRITE_ADDRESS = 0x15
    SYNC = 0x16


REPLY_BIT = 0x80
ERROR_BIT = 0x40


def reply_control(control: int) -> int:
    return control | REPLY_BIT


def error_control(control: int) -> int:
    return control | REPLY_BIT | ERROR_BIT


class FieldKind(StrEnum):
    VOLUME = "volume"  # 4 bytes BCD XXXXXX.XX (lowest byte first) + 1 byte unit code
    DATETIME = "datetime"  # 7 bytes BCD ss mm hh DD MM YYlo YYhi
    STATUS = "status"  # 2 bytes, status byte 1 first


@dataclass(frozen=True, slots=True)
class ReplyField:
    name: str
    kind: FieldKind
    length: int


@dataclass(frozen=True, slots=True)
class DataItem:
    """One data identifier: how it is asked for and what its reply data holds (after DI, SER)."""

    name: str
    di: int  # as written in the standard, e.g. 0x901F
    control: Control
    reply: tuple[ReplyField, ...] = ()

    @property
    def reply_length(self) -> int:
        return sum(f.length for f in self.reply)


METERING = DataItem(
    "metering",
    0x901F,
    Control.READ,
    (
        ReplyField("current_volume", FieldKind.VOLUME, 5),
        ReplyField("settlement_volume", FieldKind.VOLUME, 5),
        ReplyField("meter_time", FieldKind.DATETIME, 7),
        ReplyField("status", FieldKind.STATUS, 2),
    ),
)
READ_ADDRESS = DataItem("address", 0x810A, Control.READ_ADDRESS)
VALVE = DataItem("valve", 0xA017, Control.WRITE, (ReplyField("status", FieldKind.STATUS, 2),))

ITEMS: Mapping[int, DataItem] = MappingProxyType({i.di: i for i in (METERING, READ_ADDRESS, VALVE)})

# Reading blocks of a water meter: every block is the one metering item a CJ/T 188 meter has.
BLOCKS: Mapping[str, DataItem] = MappingProxyType({"basic": METERING, "volume": METERING})


@dataclass(frozen=True, slots=True)
class Unit:
    code: int
    symbol: str
    quantity: str
    litres: Fraction | None = None  # litres per unit, for volume units only


UNITS: Mapping[int, Unit] = MappingProxyType(
    {
        u.code: u
        for u in (
            Unit(0x02, "Wh", "energy"),
            Unit(0x05, "kWh", "energy"),
            Unit(0x08, "MWh", "energy"),
            Unit(0x0A, "MWh×100", "energy"),
            Unit(0x01, "J", "energy"),
            Unit(0x0B, "kJ", "energy"),
            Unit(0x0E, "MJ", "energy"),
            Unit(0x11, "GJ", "energy"),
            Unit(0x13, "GJ×100", "energy"),
            Unit(0x14, "W", "power"),
            Unit(0x17, "kW", "power"),
            Unit(0x1A, "MW", "power"),
            Unit(0x29, "L", "volume", Fraction(1)),
            Unit(0x2C, "m³", "volume", Fraction(1000)),
            Unit(0x32, "L/h", "flow"),
            Unit(0x35, "m³/h", "flow"),
        )
    }
)
CUBIC_METRE = 0x2C

# Status byte 1, D0..D1: the valve. 10 is undefined in the standard; a meter reporting it is
# treated like "abnormal", which is what the operator must look at either way.
VALVE_BITS_MASK = 0b11
VALVE_STATES: Mapping[int, ValveState] = MappingProxyType(
    {
        0b00: ValveState.OPEN,
        0b01: ValveState.CLOSED,
        0b10: ValveState.ABNORMAL,
        0b11: ValveState.ABNORMAL,
    }
)
VALVE_STATE_BITS: Mapping[ValveState, int] = MappingProxyType(
    {ValveState.OPEN: 0b00, ValveState.CLOSED: 0b01, ValveState.ABNORMAL: 0b11}
)
# Other status byte 1 bits, as event flags.
STATUS_FLAGS: Mapping[int, str] = MappingProxyType({0x04: "battery_low"})


class ValveCommand(IntEnum):
    OPEN = 0x55
    CLOSE = 0x99
    EXERCISE = 0xAA  # open-close cycle against scale
    HALF_OPEN = 0x77  # vendor extension
