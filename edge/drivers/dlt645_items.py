"""DL/T 645 data identifiers and reading blocks, as data.

`ITEMS` is one declarative table: each row names an item, its DI (2007; 1997 where one exists),
its wire format (length, decimals, sign, coding), its unit and the `Reading` field it fills.
Block DIs (…FF…) are rows whose `parts` list the items a block reply concatenates; a reply may
carry fewer parts than listed (a meter with 4 tariffs answers total + 4 of the 63).

`BLOCKS_2007` / `BLOCKS_1997` are the named reading blocks: the rows to request, one round trip
each, block DIs wherever one covers the group. DL/T 645 has no multi-DI read, so a group with no
block DI (e.g. `basic`) costs one round trip per item, unless the meter answers a block that
carries several of them (`dlt645_blocks`: which blocks a meter answers, and the read plan).

Values: BCD items decode to the register as an integer count of its last digit (1234.56 kWh →
123456); `to_reading_units` scales that once, to integer Wh for energy, to floats for
measurements. Signed items (2007) carry the sign in the top bit of the most significant byte;
the 1997 standard has no signed formats.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from edge.drivers.dlt645 import bcd_to_int, int_to_bcd
from edge.drivers.errors import DriverUsageError, FrameError
from edge.drivers.reading import Reading, RelayState
from ledger.units import Wh

Coding = Literal["bcd", "binary", "date", "time", "block"]
Value = int | dt.date | dt.time


@dataclass(frozen=True, slots=True)
class Format:
    """How an item's bytes look on the wire (lowest byte first)."""

    length: int
    decimals: int = 0
    signed: bool = False  # top bit of the most significant byte is the sign
    coding: Coding = "bcd"


ENERGY_KWH: Final = Format(4, 2)  # XXXXXX.XX kWh
COMBINED_KWH: Final = Format(4, 2, signed=True)  # combined active may run backwards
VOLTS: Final = Format(2, 1)  # XXX.X V
AMPS: Final = Format(3, 3, signed=True)  # XXX.XXX A
KILOWATTS: Final = Format(3, 4, signed=True)  # XX.XXXX kW / kvar
POWER_FACTOR: Final = Format(2, 3, signed=True)  # X.XXX
HERTZ: Final = Format(2, 2)  # XX.XX Hz
DATE: Final = Format(4, coding="date")  # YYMMDDWW
TIME: Final = Format(3, coding="time")  # hhmmss
WORD: Final = Format(2, coding="binary")  # status words are bit fields, not BCD
COUNT: Final = Format(3)  # XXXXXX, as the standard's event totals
BLOCK: Final = Format(0, coding="block")
# 1997 formats where they differ (DL/T 645-1997 tables; not in our reference notes).
VOLTS_1997: Final = Format(2, 0)  # XXX V
AMPS_1997: Final = Format(2, 2)  # XX.XX A
KILOWATTS_1997: Final = Format(3, 4)  # XX.XXXX kW, unsigned

# Reading units per wire unit: value in reading units = register × 10^(exponent - decimals).
UNIT_EXPONENTS: Final = {
    "kWh": 3,
    "kW": 3,
    "kvar": 3,
    "W": 0,
    "V": 0,
    "A": 0,
    "Hz": 0,
    "s": 0,
    "": 0,
}


@dataclass(frozen=True, slots=True)
class DataItem:
    """One row of the DI table."""

    name: str
    di: int  # DL/T 645-2007, written DI3 DI2 DI1 DI0
    fmt: Format
    unit: str = ""
    fills: str | None = None  # the Reading field this item fills
    index: int = 0  # position in a tuple field (tariff n → n-1, status word n → n-1)
    di_1997: int | None = None
    fmt_1997: Format | None = None  # None: same as 2007, unsigned
    parts: tuple[str, ...] = ()  # block rows: the items the reply concatenates
    vendor: bool = False  # not in the standard: a vendor extension

    @property
    def is_block(self) -> bool:
        return bool(self.parts)

    def di_for(self, version: int) -> int | None:
        return self.di if version == 2007 else self.di_1997

    def format_for(self, version: int) -> Format:
        if version == 2007:
            return self.fmt
        if self.fmt_1997 is not None:
            return self.fmt_1997
        fmt = self.fmt
        return Format(fmt.length, fmt.decimals, False, fmt.coding) if fmt.signed else fmt


def _tariffs(prefix: str, di_base: int, fmt: Format, fills: str | None) -> list[DataItem]:
    """Tariff rows 1..63 (DI1 = tariff number); the 1997 standard numbers tariffs 1..14."""
    return [
        DataItem(
            f"{prefix}_tariff_{n}",
            di_base | n << 8,
            fmt,
            "kWh",
            fills,
            n - 1,
            di_1997=(0x9010 + n) if prefix == "forward_active" and n <= 14 else None,
        )
        for n in range(1, 64)
    ]


def _names(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}_{n}" for n in range(1, count + 1))


_PHASES: Final = ("a", "b", "c")

ITEMS: Final[tuple[DataItem, ...]] = (
    # -- energy (DI0 00: current; 01..0C: previous settlements, see `settlement`) --
    DataItem("combined_active_total", 0x00000000, COMBINED_KWH, "kWh"),
    *_tariffs("combined_active", 0x00000000, COMBINED_KWH, None),
    DataItem(
        "combined_active_block",
        0x0000FF00,
        BLOCK,
        parts=("combined_active_total", *_names("combined_active_tariff", 63)),
    ),
    DataItem("forward_active_total", 0x00010000, ENERGY_KWH, "kWh", "energy_wh", di_1997=0x9010),
    *_tariffs("forward_active", 0x00010000, ENERGY_KWH, "energy_by_tariff_wh"),
    DataItem(
        "forward_active_block",
        0x0001FF00,
        BLOCK,
        di_1997=0x901F,
        parts=("forward_active_total", *_names("forward_active_tariff", 63)),
    ),
    DataItem("reverse_active_total", 0x00020000, ENERGY_KWH, "kWh"),
    # -- instantaneous values --
    *(
        DataItem(
            f"voltage_{p}",
            0x02010000 | n << 8,
            VOLTS,
            "V",
            "voltage_v" if p == "a" else None,
            di_1997=0xB610 + n,
            fmt_1997=VOLTS_1997,
        )
        for n, p in enumerate(_PHASES, 1)
    ),
    DataItem("voltage_block", 0x0201FF00, BLOCK, parts=("voltage_a", "voltage_b", "voltage_c")),
    *(
        DataItem(
            f"current_{p}",
            0x02020000 | n << 8,
            AMPS,
            "A",
            "current_a" if p == "a" else None,
            di_1997=0xB620 + n,
            fmt_1997=AMPS_1997,
        )
        for n, p in enumerate(_PHASES, 1)
    ),
    DataItem("current_block", 0x0202FF00, BLOCK, parts=("current_a", "current_b", "current_c")),
    DataItem(
        "active_power_total",
        0x02030000,
        KILOWATTS,
        "kW",
        "power_w",
        di_1997=0xB630,
        fmt_1997=KILOWATTS_1997,
    ),
    *(
        DataItem(f"active_power_{p}", 0x02030000 | n << 8, KILOWATTS, "kW")
        for n, p in enumerate(_PHASES, 1)
    ),
    DataItem(
        "active_power_block",
        0x0203FF00,
        BLOCK,
        parts=("active_power_total", "active_power_a", "active_power_b", "active_power_c"),
    ),
    DataItem("reactive_power_total", 0x02040000, KILOWATTS, "kvar", "reactive_var"),
    DataItem("power_factor_total", 0x02060000, POWER_FACTOR, "", "power_factor"),
    DataItem("frequency", 0x02800002, HERTZ, "Hz", "frequency_hz"),
    # -- clock and status --
    DataItem("date", 0x04000101, DATE, fills="meter_time", di_1997=0xC010),
    DataItem("time", 0x04000102, TIME, fills="meter_time", di_1997=0xC011),
    *(
        DataItem(f"status_word_{n}", 0x04000500 | n, WORD, fills="status_words", index=n - 1)
        for n in range(1, 8)
    ),
    # The standard's status block (not in our reference notes); refused → read word by word.
    DataItem("status_words_block", 0x040005FF, BLOCK, parts=_names("status_word", 7)),
    # -- vendor extension: trip counters. The standard has no DIs for them; these sit in the
    # event-record range (03) at 03 F0, which the standard leaves unused. --
    DataItem("malicious_load_trips", 0x03F00100, COUNT, fills="counters", vendor=True),
    DataItem("overload_trips", 0x03F00200, COUNT, fills="counters", vendor=True),
    DataItem("over_voltage_trips", 0x03F00300, COUNT, fills="counters", vendor=True),
    DataItem(
        "abnormal_trips_block",
        0x03F0FF00,
        BLOCK,
        parts=("malicious_load_trips", "overload_trips", "over_voltage_trips"),
        vendor=True,
    ),
    # The simulated model's block of every `basic` item in one reply (dlt645_blocks): the
    # standard's blocks are one class each, so only a vendor block spans classes.
    DataItem(
        "basic_vendor_block",
        0x03F1FF00,
        BLOCK,
        parts=(
            "forward_active_total",
            "voltage_a",
            "current_a",
            "active_power_total",
            "power_factor_total",
            "frequency",
            "status_word_3",
        ),
        vendor=True,
    ),
)

ITEMS_BY_NAME: Final = {item.name: item for item in ITEMS}
ITEMS_BY_DI: Final = {item.di: item for item in ITEMS}
ITEMS_BY_DI_1997: Final = {item.di_1997: item for item in ITEMS if item.di_1997 is not None}

# Status word bits worth a name. Word 3 bit 4 is the relay (1 = open); words 4..6 are phases.
RELAY_WORD: Final = 3
RELAY_OPEN_BIT: Final = 4
STATUS_FLAGS: Final[tuple[tuple[int, int, str], ...]] = (
    (3, 6, "relay_commanded_open"),
    (3, 7, "pre_trip_alarm"),
    (3, 12, "keep_power"),
    *(
        (word, bit, f"{what}_{phase}")
        for word, phase in zip((4, 5, 6), _PHASES, strict=True)
        for bit, what in ((2, "over_voltage"), (4, "over_current"), (5, "overload"))
    ),
)


@dataclass(frozen=True, slots=True)
class ReadingBlock:
    """A named group of items and the rows that fetch it, one round trip per row."""

    name: str
    reads: tuple[str, ...]

    @property
    def items(self) -> tuple[DataItem, ...]:
        return tuple(ITEMS_BY_NAME[name] for name in self.reads)


BLOCKS_2007: Final = {
    block.name: block
    for block in (
        ReadingBlock(
            "basic",
            (
                "forward_active_total",
                "voltage_a",
                "current_a",
                "active_power_total",
                "power_factor_total",
                "frequency",
                "status_word_3",
            ),
        ),
        ReadingBlock("energy", ("forward_active_block",)),
        # What the malicious-load and overload rules judge, cheap enough to read every 30 s.
        ReadingBlock("power", ("active_power_total", "power_factor_total")),
        ReadingBlock("abnormal_trips", ("abnormal_trips_block",)),
        ReadingBlock("status", ("status_words_block",)),
        ReadingBlock("clock", ("date", "time")),
    )
}
BLOCKS_1997: Final = {
    block.name: block
    for block in (
        ReadingBlock(
            "basic", ("forward_active_total", "voltage_a", "current_a", "active_power_total")
        ),
        ReadingBlock("energy", ("forward_active_block",)),
        ReadingBlock("power", ("active_power_total",)),  # 1997 has no power factor
        ReadingBlock("clock", ("date", "time")),
    )
}
BLOCKS: Final = {2007: BLOCKS_2007, 1997: BLOCKS_1997}


def block_items(version: int) -> frozenset[str]:
    """The rows a site-defined block may list: those with a DI in `version` whose values a
    `Reading` carries (a block row counts when every part it concatenates does)."""

    def carried(item: DataItem) -> bool:
        if item.is_block:
            return all(ITEMS_BY_NAME[part].fills is not None for part in item.parts)
        return item.fills is not None

    return frozenset(i.name for i in ITEMS if i.di_for(version) is not None and carried(i))


def item_for_di(di: int, version: int = 2007) -> DataItem | None:
    return (ITEMS_BY_DI if version == 2007 else ITEMS_BY_DI_1997).get(di)


def settlement(item: DataItem, previous: int) -> DataItem:
    """An energy item of the `previous`-th settlement (1..12; DI0 selects it). Not in blocks."""
    if not (item.unit == "kWh" and 1 <= previous <= 12):
        raise DriverUsageError(f"{item.name} has no settlement {previous}")
    return DataItem(f"{item.name}_settlement_{previous}", item.di | previous, item.fmt, "kWh")


# --- values ------------------------------------------------------------------------------------


def decode_value(
    item: DataItem, raw: bytes, version: int = 2007, *, address: str | None = None
) -> Value:
    """The register value of one (non-block) item; FrameError names the item if it is garbage."""
    fmt = item.format_for(version)
    if len(raw) != fmt.length:
        raise FrameError(
            f"{fmt.length} bytes expected, got {len(raw)}", address=address, item=item.name
        )
    try:
        if fmt.coding == "binary":
            return int.from_bytes(raw, "little")
        if fmt.coding == "bcd":
            if fmt.signed and raw[-1] & 0x80:
                return -bcd_to_int(raw[:-1] + bytes((raw[-1] & 0x7F,)))
            return bcd_to_int(raw)
        fields = [bcd_to_int(raw[i : i + 1]) for i in range(len(raw) - 1, -1, -1)]
        if fmt.coding == "date":
            return dt.date(2000 + fields[0], fields[1], fields[2])
        return dt.time(fields[0], fields[1], fields[2])
    except FrameError:
        raise FrameError(f"not BCD: {raw.hex(' ')}", address=address, item=item.name) from None
    except ValueError as exc:  # impossible date or time
        raise FrameError(
            f"impossible {fmt.coding} {raw.hex(' ')}", address=address, item=item.name
        ) from exc


def encode_value(item: DataItem, value: Value, version: int = 2007) -> bytes:
    """Inverse of `decode_value` (the simulated meter's side)."""
    fmt = item.format_for(version)
    if fmt.coding == "binary" and isinstance(value, int):
        return value.to_bytes(fmt.length, "little")
    if fmt.coding == "bcd" and isinstance(value, int):
        if value < 0 and not fmt.signed:
            raise DriverUsageError(f"{item.name} is unsigned, got {value}")
        raw = int_to_bcd(abs(value), fmt.length)
        if fmt.signed and (raw[-1] & 0x80 or value < 0):
            if raw[-1] & 0x80:
                raise DriverUsageError(f"{value} does not fit {item.name}")
            raw = raw[:-1] + bytes((raw[-1] | 0x80,))
        return raw
    if fmt.coding == "date" and isinstance(value, dt.date):
        fields = (value.isoweekday() % 7, value.day, value.month, value.year - 2000)
        return b"".join(int_to_bcd(v, 1) for v in fields)
    if fmt.coding == "time" and isinstance(value, dt.time):
        return b"".join(int_to_bcd(v, 1) for v in (value.second, value.minute, value.hour))
    raise DriverUsageError(f"{item.name} cannot hold {value!r}")


def register_limit(item: DataItem, version: int = 2007) -> int:
    """Largest magnitude a BCD item can hold (a meter's register wraps past it)."""
    fmt = item.format_for(version)
    digits: int = 10 ** (2 * fmt.length - 1)
    return (8 if fmt.signed else 10) * digits - 1


def decode_reply(
    item: DataItem, data: bytes, version: int = 2007, *, address: str | None = None
) -> list[tuple[DataItem, Value]]:
    """Values in a reply's data (DI already removed): one item, or the parts of a block."""
    if not item.is_block:
        return [(item, decode_value(item, data, version, address=address))]
    values: list[tuple[DataItem, Value]] = []
    offset = 0
    for name in item.parts:
        if offset == len(data):
            break
        part = ITEMS_BY_NAME[name]
        end = offset + part.format_for(version).length
        if end > len(data):
            break
        values.append((part, decode_value(part, data[offset:end], version, address=address)))
        offset = end
    if offset != len(data) or not values:
        raise FrameError(
            f"{len(data)} bytes do not split into its parts", address=address, item=item.name
        )
    return values


def to_reading_units(item: DataItem, register: int, version: int = 2007) -> int | float:
    """Register → Wh (exact int) for energy; W, var, V, A, Hz, PF (float) for the rest."""
    shift = UNIT_EXPONENTS[item.unit] - item.format_for(version).decimals
    if item.unit == "kWh":
        # 0.01 kWh = 10 Wh: energy never passes through float (the table has no finer register)
        factor: int = 10**shift
        return register * factor
    # Divide by an exact power of ten: 950 / 1000 is 0.95, 950 * 0.001 is not.
    return register / 10.0**-shift if shift < 0 else register * 10.0**shift


def from_reading_units(item: DataItem, value: float, version: int = 2007) -> int:
    """Reading units → register (the simulated meter's side), rounded to the last digit."""
    shift = UNIT_EXPONENTS[item.unit] - item.format_for(version).decimals
    return round(value / 10.0**shift)


def build_reading(
    address: str, values: Iterable[tuple[DataItem, Value]], version: int = 2007
) -> Reading:
    """Type decoded values into a `Reading`, each field converted once."""
    energy: Wh | None = None
    tariffs: dict[int, Wh] = {}
    floats: dict[str, float] = {}
    words: dict[int, int] = {}
    counters: dict[str, int] = {}
    flags: set[str] = set()
    relay: RelayState | None = None
    date: dt.date | None = None
    clock: dt.time | None = None
    for item, value in values:
        fills = item.fills
        if fills is None:
            continue
        if isinstance(value, dt.date):
            date = value
        elif isinstance(value, dt.time):
            clock = value
        elif fills == "energy_wh":
            energy = Wh(int(to_reading_units(item, value, version)))
        elif fills == "energy_by_tariff_wh":
            tariffs[item.index] = Wh(int(to_reading_units(item, value, version)))
        elif fills == "counters":
            counters[item.name] = value
        elif fills == "status_words":
            word = item.index + 1
            words[word] = value
            flags.update(name for w, bit, name in STATUS_FLAGS if w == word and value >> bit & 1)
            if word == RELAY_WORD:
                relay = RelayState.OPEN if value >> RELAY_OPEN_BIT & 1 else RelayState.CLOSED
        else:
            floats[fills] = float(to_reading_units(item, value, version))
    return Reading(
        address=address,
        energy_wh=energy,
        energy_by_tariff_wh=tuple(tariffs[i] for i in sorted(tariffs)),
        voltage_v=floats.get("voltage_v"),
        current_a=floats.get("current_a"),
        power_w=floats.get("power_w"),
        reactive_var=floats.get("reactive_var"),
        power_factor=floats.get("power_factor"),
        frequency_hz=floats.get("frequency_hz"),
        relay=relay,
        # Only a complete set keeps positions meaningful; single words still give flags.
        status_words=tuple(words[w] for w in range(1, 8)) if len(words) == 7 else (),
        event_flags=frozenset(flags),
        counters=tuple(counters.items()),
        meter_time=dt.datetime.combine(date, clock) if date and clock else None,
    )
