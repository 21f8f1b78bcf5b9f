"""Register maps of the Modbus RTU energy meters Voltbook reads, as data.

One row per register (name, address, function code, value type, unit, scale), one row per
`Reading` field (which registers feed it and how they combine, in the style of Home Assistant's
`SensorEntityDescription.value_fn`), one row per reading block, and relay maps per model and
vendor variant. `edge.drivers.modbus_meters` plans and decodes reads from these tables only;
adding a model is adding rows here, not branches there. Sources: docs/architecture.md §11.

Float registers are IEEE-754 float32 with the high word first (what pymodbus calls
`word_order="big"`). `scale` turns the register's unit into the `Reading`'s unit, e.g. the
DDSU666 reports power in kW and `Reading.power_w` is in W, so its scale is 1000. Energy is not
scaled here: the kWh register is converted to integer Wh once, with its quantisation bound, by
`modbus_meters.float32_kwh_to_wh`.

A model is its vendor's documented registers and nothing else: none of these register maps
documents a relay, so a `MeterModel` has none and a real meter is read with `Reading.relay`
None (a real meter refuses the whole read, "illegal data address", if it is asked for a
register it does not have). Relay control is vendor-specific (a coil or a holding register, and
it differs between variants of one model), so it lives in `RELAY_MAPS`: per model, per variant,
each row naming the document it comes from. A driver gets a relay only when it is given one of
those rows; without one a relay command is refused (`UnsupportedOperation`), never invented.
The only rows today are Voltbook's simulator's (holding register 0x9000 written 1 = trip /
0 = close, 0x9001 read back 1 = open / 0 = closed); a vendor's relay variant is added as a row
with its document's name once someone has that document.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Literal

from pymodbus.constants import ExcCodes

from edge.drivers.base import SerialSettings
from edge.drivers.errors import UnsupportedOperation

# The largest register count one read (function 03/04) may ask for (Modbus spec, pymodbus
# `ReadHoldingRegistersRequest.MAX_COUNT`).
MAX_READ_REGISTERS = 125


class RegisterTable(IntEnum):
    """Which register table a row lives in; the value is the function code that reads it."""

    HOLDING = 3
    INPUT = 4


class ValueType(StrEnum):
    FLOAT32 = "float32"  # IEEE-754, high word first
    UINT16 = "uint16"


WORDS: Mapping[ValueType, int] = MappingProxyType({ValueType.FLOAT32: 2, ValueType.UINT16: 1})

FloatField = Literal[
    "voltage_v", "current_a", "power_w", "reactive_var", "power_factor", "frequency_hz"
]


@dataclass(frozen=True, slots=True)
class Register:
    name: str
    address: int
    table: RegisterTable
    unit: str = ""
    value_type: ValueType = ValueType.FLOAT32
    scale: float = 1.0  # register unit → Reading unit (kW → W is 1000)

    @property
    def words(self) -> int:
        return WORDS[self.value_type]

    @property
    def end(self) -> int:
        """First register address after this one."""
        return self.address + self.words


def _only(values: Sequence[float]) -> float:
    return values[0]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one float field of a `Reading` is made from decoded register values."""

    field: FloatField
    registers: tuple[str, ...]
    combine: Callable[[Sequence[float]], float] = _only


@dataclass(frozen=True, slots=True)
class RelayMap:
    """Where one variant of a model commands its relay and reads it back (06 write, 03 read)."""

    variant: str
    source: str  # the document this row comes from (vendor manual, or Voltbook's simulator)
    command: Register
    state: Register
    trip_value: int = 1
    close_value: int = 0
    open_state: int = 1  # relay open: power cut
    closed_state: int = 0
    documented: bool = False  # True only when `source` is the vendor's own document

    @property
    def registers(self) -> tuple[Register, Register]:
        return (self.command, self.state)


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """A named reading block: the Reading fields it fills and whether it reads the relay.

    `relay=True` reads the relay state when the driver has a relay map; a block that is *only*
    the relay (`fields=()`) is refused without one.
    """

    name: str
    fields: tuple[str, ...]  # FloatField names and/or "energy_wh"
    relay: bool = False


BLOCKS: tuple[BlockSpec, ...] = (
    BlockSpec(
        "basic",
        ("energy_wh", "voltage_v", "current_a", "power_w", "power_factor", "frequency_hz"),
        relay=True,
    ),
    BlockSpec("energy", ("energy_wh",)),
    # What the malicious-load and overload rules judge, cheap enough to read every 30 s.
    BlockSpec("power", ("power_w", "reactive_var", "power_factor")),
    BlockSpec("relay", (), relay=True),
)


@dataclass(frozen=True, slots=True)
class MeterModel:
    name: str
    title: str
    registers: tuple[Register, ...]
    fields: tuple[FieldSpec, ...]
    energy: str  # the kWh register billed as Reading.energy_wh (total active import)
    default_settings: SerialSettings
    # Largest run of undocumented registers a single read may span. 0 reads only contiguous
    # documented registers; a model earns a gap only where reading across it is known to work.
    max_gap: int = 0
    blocks: tuple[BlockSpec, ...] = BLOCKS
    _by_name: Mapping[str, Register] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rows = {r.name: r for r in self.registers}
        object.__setattr__(self, "_by_name", MappingProxyType(rows))

    def register(self, name: str) -> Register:
        return self._by_name[name]

    def block(self, name: str) -> BlockSpec | None:
        return next((b for b in self.blocks if b.name == name), None)

    @property
    def items(self) -> frozenset[str]:
        """The fields a block of this model may list: its energy and its float fields."""
        return frozenset({"energy_wh", *(f.field for f in self.fields)})

    def field_spec(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.field == name), None)


_SDM_SETTINGS = SerialSettings(baudrate=2400, parity="N", bytesize=8, stopbits=1)
_IN = RegisterTable.INPUT
_HOLD = RegisterTable.HOLDING

SDM120_MAP = MeterModel(
    name="sdm120",
    title="Eastron SDM120 (single phase)",
    registers=(
        Register("voltage", 0x0000, _IN, "V"),
        Register("current", 0x0006, _IN, "A"),
        Register("active_power", 0x000C, _IN, "W"),
        Register("apparent_power", 0x0012, _IN, "VA"),
        Register("reactive_power", 0x0018, _IN, "var"),
        Register("power_factor", 0x001E, _IN),
        Register("frequency", 0x0046, _IN, "Hz"),
        Register("import_energy", 0x0048, _IN, "kWh"),
        Register("export_energy", 0x004A, _IN, "kWh"),
        Register("total_energy", 0x0156, _IN, "kWh"),
    ),
    fields=(
        FieldSpec("voltage_v", ("voltage",)),
        FieldSpec("current_a", ("current",)),
        FieldSpec("power_w", ("active_power",)),
        FieldSpec("reactive_var", ("reactive_power",)),
        FieldSpec("power_factor", ("power_factor",)),
        FieldSpec("frequency_hz", ("frequency",)),
    ),
    energy="import_energy",
    default_settings=_SDM_SETTINGS,
)

_PHASES = ("l1", "l2", "l3")

SDM630_MAP = MeterModel(
    name="sdm630",
    title="Eastron SDM630 (three phase)",
    registers=(
        *(Register(f"voltage_{p}", 0x0000 + 2 * i, _IN, "V") for i, p in enumerate(_PHASES)),
        *(Register(f"current_{p}", 0x0006 + 2 * i, _IN, "A") for i, p in enumerate(_PHASES)),
        *(Register(f"power_{p}", 0x000C + 2 * i, _IN, "W") for i, p in enumerate(_PHASES)),
        Register("apparent_power", 0x0012, _IN, "VA"),
        Register("reactive_power", 0x0018, _IN, "var"),
        *(Register(f"power_factor_{p}", 0x001E + 2 * i, _IN) for i, p in enumerate(_PHASES)),
        Register("total_power", 0x0034, _IN, "W"),
        Register("total_power_factor", 0x003E, _IN),
        Register("frequency", 0x0046, _IN, "Hz"),
        Register("import_energy", 0x0048, _IN, "kWh"),
        Register("export_energy", 0x004A, _IN, "kWh"),
        Register("total_energy", 0x0156, _IN, "kWh"),
    ),
    fields=(
        # One Reading carries one voltage and one current: the phase mean for voltage (what a
        # supply check wants) and the most loaded phase for current (what overload must see).
        FieldSpec("voltage_v", tuple(f"voltage_{p}" for p in _PHASES), statistics.fmean),
        FieldSpec("current_a", tuple(f"current_{p}" for p in _PHASES), max),
        FieldSpec("power_w", ("total_power",)),
        FieldSpec("reactive_var", ("reactive_power",)),
        FieldSpec("power_factor", ("total_power_factor",)),
        FieldSpec("frequency_hz", ("frequency",)),
    ),
    energy="import_energy",
    default_settings=_SDM_SETTINGS,
)

DDSU666_MAP = MeterModel(
    name="ddsu666",
    title="Chint DDSU666 (single phase, community-documented map)",
    registers=(
        Register("voltage", 0x2000, _HOLD, "V"),
        Register("current", 0x2002, _HOLD, "A"),
        Register("active_power", 0x2004, _HOLD, "kW", scale=1000.0),
        Register("reactive_power", 0x2006, _HOLD, "kvar", scale=1000.0),
        Register("power_factor", 0x200A, _HOLD),
        Register("frequency", 0x200E, _HOLD, "Hz"),
        Register("import_energy", 0x4000, _HOLD, "kWh"),
        Register("export_energy", 0x400A, _HOLD, "kWh"),
    ),
    fields=(
        FieldSpec("voltage_v", ("voltage",)),
        FieldSpec("current_a", ("current",)),
        FieldSpec("power_w", ("active_power",)),
        FieldSpec("reactive_var", ("reactive_power",)),
        FieldSpec("power_factor", ("power_factor",)),
        FieldSpec("frequency_hz", ("frequency",)),
    ),
    energy="import_energy",
    default_settings=_SDM_SETTINGS,
    # The community example reads 0x2000..0x200F in one request (`01 03 20 00 00 10 4F C6`),
    # across the undocumented 0x2008/0x200C words, so this model may span gaps that short.
    max_gap=4,
)

MODELS: Mapping[str, MeterModel] = MappingProxyType(
    {m.name: m for m in (SDM120_MAP, SDM630_MAP, DDSU666_MAP)}
)

SIMULATED_RELAY = "voltbook-sim"
_SIMULATOR = "Voltbook simulator (demo/sim/modbus_responder.py); no vendor document"


def _simulated_relay() -> RelayMap:
    return RelayMap(
        variant=SIMULATED_RELAY,
        source=_SIMULATOR,
        command=Register("relay_command", 0x9000, _HOLD, value_type=ValueType.UINT16),
        state=Register("relay_state", 0x9001, _HOLD, value_type=ValueType.UINT16),
    )


# Model → relay variant → where that variant's relay is. No vendor document for any of these
# models' relays is at hand (docs/architecture.md §11): only the simulator's rows exist.
RELAY_MAPS: Mapping[str, Mapping[str, RelayMap]] = MappingProxyType(
    {name: MappingProxyType({SIMULATED_RELAY: _simulated_relay()}) for name in MODELS}
)


def relay_map(model: str, variant: str) -> RelayMap:
    """The relay row of `variant` of `model`; `UnsupportedOperation` if there is none."""
    variants = RELAY_MAPS.get(model, {})
    if variant not in variants:
        known = ", ".join(variants) or "none"
        raise UnsupportedOperation(
            f"{model} has no relay map for variant {variant!r} (known: {known})", item="relay"
        )
    return variants[variant]


# Modbus exception codes (Modbus Application Protocol v1.1b3, §7) as MeterRefused reasons.
EXCEPTION_REASONS: Mapping[int, str] = MappingProxyType(
    {
        ExcCodes.ILLEGAL_FUNCTION: "illegal function",
        ExcCodes.ILLEGAL_ADDRESS: "illegal data address",
        ExcCodes.ILLEGAL_VALUE: "illegal data value",
        ExcCodes.DEVICE_FAILURE: "server device failure",
        ExcCodes.ACKNOWLEDGE: "acknowledge (long command accepted)",
        ExcCodes.DEVICE_BUSY: "server device busy",
        ExcCodes.NEGATIVE_ACKNOWLEDGE: "negative acknowledge",
        ExcCodes.MEMORY_PARITY_ERROR: "memory parity error",
        ExcCodes.GATEWAY_PATH_UNAVIABLE: "gateway path unavailable",
        ExcCodes.GATEWAY_NO_RESPONSE: "gateway target device failed to respond",
    }
)
