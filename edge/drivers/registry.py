"""Protocol names → meter drivers: the names the CLI, the site configuration and the simulator
use (`dlt645`, `dlt645-1997`, `cjt188`, `sdm120`, `sdm630`, `ddsu666`).

One row per protocol: what kind of meter it is, what its address looks like (the number printed
on the meter, or a Modbus unit id), which driver options it takes and how to make a driver for
a given line. A driver made for the bus's actual settings computes its timeouts from the real
byte time (a DL/T 645 meter set to 9600 baud answers sooner than the 2400-baud default assumes).

Driver options are what differs between makes of meter speaking one protocol, given per bus and
per meter (`DriverOptions`; the site configuration's `relay`, `meter_type`, `di_order`):

    option      protocols                  values
    relay       sdm120, sdm630, ddsu666    a variant of modbus_maps.RELAY_MAPS[model], or "none"
    meter_type  cjt188                     a meter type of cjt188_items.METER_TYPES (not 0xAA)
    di_order    cjt188                     "1F90" or "901F" (how DI 0x901F goes on the wire)
    blocks      dlt645, dlt645-1997        a block capability of dlt645_blocks.BLOCK_SUPPORT

`check_options` refuses an option the protocol does not take, or a value it does not know,
naming the known ones; an option not given is the driver's default (no relay map, cold water,
"1F90", one DL/T 645 DI an exchange).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from edge.drivers.base import MeterDriver, SerialSettings
from edge.drivers.cjt188 import CJT188, DI_ORDERS, DiOrder, MeterOptions
from edge.drivers.cjt188_items import ANY_METER_TYPE, METER_TYPES
from edge.drivers.dlt645_blocks import BLOCK_SUPPORT, NO_BLOCKS
from edge.drivers.dlt645_meter import DLT645_1997, DLT645_2007, Dlt645Driver
from edge.drivers.errors import DriverUsageError

Addressing = Literal["dlt645", "cjt188", "modbus"]

NO_RELAY: Final = "none"  # `relay = "none"`: this meter has no relay map (over a bus's variant)


@dataclass(frozen=True, slots=True)
class DriverOptions:
    """The options of one bus, or of one meter over its bus's (None: not given)."""

    relay: str | None = None  # Modbus: relay variant (modbus_maps.RELAY_MAPS) or NO_RELAY
    meter_type: int | None = None  # CJ/T 188: the frame's meter type byte (T)
    di_order: DiOrder | None = None  # CJ/T 188: how DI 0x901F is sent
    blocks: str | None = None  # DL/T 645: the block DIs the meters answer (dlt645_blocks)

    def given(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None)

    def over(self, base: DriverOptions) -> DriverOptions:
        """These options, and `base`'s where these give none."""
        return dataclasses.replace(base, **{name: getattr(self, name) for name in self.given()})


NO_OPTIONS: Final = DriverOptions()

Make = Callable[[SerialSettings | None, DriverOptions, Mapping[str, DriverOptions]], MeterDriver]


def _dlt645(base: Dlt645Driver) -> Make:
    def make(
        settings: SerialSettings | None, bus: DriverOptions, meters: Mapping[str, DriverOptions]
    ) -> MeterDriver:
        driver = base if settings is None else base.with_settings(settings)
        per_meter = {a: o.blocks for a, o in meters.items() if o.blocks is not None}
        if bus.blocks is None and not per_meter:
            return driver
        return driver.with_block_reads(bus.blocks or NO_BLOCKS, per_meter)

    return make


def _cjt188_options(options: DriverOptions) -> MeterOptions:
    base = MeterOptions()
    return MeterOptions(
        meter_type=base.meter_type if options.meter_type is None else options.meter_type,
        di_order=options.di_order or base.di_order,
    )


def _cjt188(
    settings: SerialSettings | None, bus: DriverOptions, meters: Mapping[str, DriverOptions]
) -> MeterDriver:
    per_meter = {address: _cjt188_options(o.over(bus)) for address, o in meters.items()}
    return CJT188(settings, options=_cjt188_options(bus), per_meter=per_meter)


def _modbus(model: str) -> Make:
    """Imported on first use: pymodbus costs ~40 MB of RSS, which a site without Modbus meters
    should not pay."""

    def make(
        settings: SerialSettings | None, bus: DriverOptions, meters: Mapping[str, DriverOptions]
    ) -> MeterDriver:
        from edge.drivers import modbus_maps, modbus_meters

        def relay(options: DriverOptions) -> modbus_maps.RelayMap | None:
            if options.relay is None or options.relay == NO_RELAY:
                return None
            return modbus_maps.relay_map(model, options.relay)

        per_meter = {address: relay(o.over(bus)) for address, o in meters.items()}
        return modbus_meters.ModbusMeter(
            modbus_maps.MODELS[model], settings, relay=relay(bus), per_meter=per_meter
        )

    return make


def _relay_variants(model: str) -> tuple[str, ...]:
    from edge.drivers.modbus_maps import RELAY_MAPS

    return (*RELAY_MAPS.get(model, {}), NO_RELAY)


def _check_relay(model: str, value: object) -> str | None:
    known = _relay_variants(model)
    if value in known:
        return None
    return f"{model} has no relay variant {value!r} (known: {', '.join(known)})"


def _check_meter_type(_protocol: str, value: object) -> str | None:
    if value in METER_TYPES and value != ANY_METER_TYPE:
        return None
    known = ", ".join(f"0x{t:02X} {n}" for t, n in METER_TYPES.items() if t != ANY_METER_TYPE)
    shown = f"0x{value:02X}" if isinstance(value, int) else repr(value)
    return f"meter_type {shown} is no CJ/T 188 meter type (known: {known})"


def _check_di_order(_protocol: str, value: object) -> str | None:
    if value in DI_ORDERS:
        return None
    return f"di_order must be one of {', '.join(map(repr, DI_ORDERS))}, got {value!r}"


def _check_blocks(_protocol: str, value: object) -> str | None:
    if value in BLOCK_SUPPORT:
        return None
    return f"blocks {value!r} is no block capability (known: {', '.join(BLOCK_SUPPORT)})"


# Option name → its check (protocol, value → why it is wrong, or None).
OPTION_CHECKS: Final[Mapping[str, Callable[[str, object], str | None]]] = MappingProxyType(
    {
        "relay": _check_relay,
        "meter_type": _check_meter_type,
        "di_order": _check_di_order,
        "blocks": _check_blocks,
    }
)
_MODBUS_OPTIONS = ("relay",)
_CJT188_OPTIONS = ("meter_type", "di_order")
_DLT645_OPTIONS = ("blocks",)


@dataclass(frozen=True, slots=True)
class ProtocolInfo:
    name: str
    kind: Literal["electric", "water"]
    addressing: Addressing
    make: Make
    summary: str
    options: tuple[str, ...] = ()  # the DriverOptions fields it takes

    @property
    def default_settings(self) -> SerialSettings:
        return self.make(None, NO_OPTIONS, {}).default_settings


PROTOCOLS: Final[dict[str, ProtocolInfo]] = {
    p.name: p
    for p in (
        ProtocolInfo(
            "dlt645",
            "electric",
            "dlt645",
            _dlt645(DLT645_2007),
            "DL/T 645-2007 energy meter",
            _DLT645_OPTIONS,
        ),
        ProtocolInfo(
            "dlt645-1997",
            "electric",
            "dlt645",
            _dlt645(DLT645_1997),
            "DL/T 645-1997 energy meter (older, 1200 baud)",
            _DLT645_OPTIONS,
        ),
        ProtocolInfo(
            "cjt188", "water", "cjt188", _cjt188, "CJ/T 188-2004 water meter", _CJT188_OPTIONS
        ),
        ProtocolInfo(
            "sdm120",
            "electric",
            "modbus",
            _modbus("sdm120"),
            "Eastron SDM120, Modbus RTU",
            _MODBUS_OPTIONS,
        ),
        ProtocolInfo(
            "sdm630",
            "electric",
            "modbus",
            _modbus("sdm630"),
            "Eastron SDM630, Modbus RTU",
            _MODBUS_OPTIONS,
        ),
        ProtocolInfo(
            "ddsu666",
            "electric",
            "modbus",
            _modbus("ddsu666"),
            "Chint DDSU666, Modbus RTU",
            _MODBUS_OPTIONS,
        ),
    )
}

# What an address looks like, per addressing scheme (the number printed on the meter).
ADDRESS_RULES: Final[dict[Addressing, tuple[re.Pattern[str], str]]] = {
    "dlt645": (re.compile(r"[0-9]{1,12}"), "up to 12 digits, as printed on the meter"),
    "cjt188": (re.compile(r"[0-9]{14}"), "14 digits, as printed on the meter"),
    "modbus": (re.compile(r"0*([1-9]|[1-9][0-9]|1[0-9][0-9]|2[0-3][0-9]|24[0-7])"), "1..247"),
}


def protocol(name: str) -> ProtocolInfo:
    """The row for `name`; DriverUsageError naming the known ones otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        known = ", ".join(PROTOCOLS)
        raise DriverUsageError(f"unknown protocol {name!r} (known: {known})") from None


def options_problem(name: str, options: DriverOptions) -> str | None:
    """Why protocol `name` cannot take `options` (naming the option and what it could be), or
    None if it takes every one given with that value."""
    info = protocol(name)
    for option in options.given():
        if option not in info.options:
            takes = ", ".join(info.options) or "none"
            return f"{name} takes no option {option!r} (its options: {takes})"
        problem = OPTION_CHECKS[option](name, getattr(options, option))
        if problem is not None:
            return problem
    return None


def check_options(name: str, options: DriverOptions) -> DriverOptions:
    """`options`, or DriverUsageError saying why protocol `name` cannot take them."""
    problem = options_problem(name, options)
    if problem is not None:
        raise DriverUsageError(problem)
    return options


def driver_for(
    name: str,
    settings: SerialSettings | None = None,
    options: DriverOptions = NO_OPTIONS,
    per_meter: Mapping[str, DriverOptions] | None = None,
) -> MeterDriver:
    """A driver for protocol `name` on a line with `settings` (None: the protocol's default),
    with a bus's `options` and, by meter address, the options of meters that differ."""
    meters = per_meter or {}
    for checked in (options, *meters.values()):
        check_options(name, checked)
    return protocol(name).make(settings, options, meters)


def check_address(name: str, address: str) -> str:
    """`address` normalised for protocol `name` (DL/T 645 zero-padded to 12 digits)."""
    info = protocol(name)
    pattern, rule = ADDRESS_RULES[info.addressing]
    text = address.strip()
    if not pattern.fullmatch(text):
        raise DriverUsageError(f"{info.name} address must be {rule}, got {address!r}")
    if info.addressing == "dlt645":
        return text.rjust(12, "0")
    if info.addressing == "modbus":
        return str(int(text))
    return text
