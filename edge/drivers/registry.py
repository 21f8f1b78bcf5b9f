"""Protocol names → meter drivers: the names the CLI, the site configuration and the simulator
use (`dlt645`, `dlt645-1997`, `cjt188`, `sdm120`, `sdm630`, `ddsu666`).

One row per protocol: what kind of meter it is, what its address looks like (the number printed
on the meter, or a Modbus unit id) and how to make a driver for a given line. A driver made for
the bus's actual settings computes its timeouts from the real byte time (a DL/T 645 meter set to
9600 baud answers sooner than the 2400-baud default assumes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from edge.drivers.base import MeterDriver, SerialSettings
from edge.drivers.cjt188 import CJT188
from edge.drivers.dlt645_meter import DLT645_1997, DLT645_2007, Dlt645Driver
from edge.drivers.errors import DriverUsageError

Addressing = Literal["dlt645", "cjt188", "modbus"]


def _dlt645(base: Dlt645Driver) -> Callable[[SerialSettings | None], MeterDriver]:
    return lambda settings: base if settings is None else base.with_settings(settings)


def _modbus(model: str) -> Callable[[SerialSettings | None], MeterDriver]:
    """Imported on first use: pymodbus costs ~40 MB of RSS, which a site without Modbus meters
    should not pay."""

    def make(settings: SerialSettings | None) -> MeterDriver:
        from edge.drivers import modbus_meters

        driver: Callable[[SerialSettings | None], MeterDriver] = getattr(modbus_meters, model)
        return driver(settings)

    return make


@dataclass(frozen=True, slots=True)
class ProtocolInfo:
    name: str
    kind: Literal["electric", "water"]
    addressing: Addressing
    make: Callable[[SerialSettings | None], MeterDriver]
    summary: str

    @property
    def default_settings(self) -> SerialSettings:
        return self.make(None).default_settings


PROTOCOLS: Final[dict[str, ProtocolInfo]] = {
    p.name: p
    for p in (
        ProtocolInfo(
            "dlt645", "electric", "dlt645", _dlt645(DLT645_2007), "DL/T 645-2007 energy meter"
        ),
        ProtocolInfo(
            "dlt645-1997",
            "electric",
            "dlt645",
            _dlt645(DLT645_1997),
            "DL/T 645-1997 energy meter (older, 1200 baud)",
        ),
        ProtocolInfo("cjt188", "water", "cjt188", CJT188, "CJ/T 188-2004 water meter"),
        ProtocolInfo(
            "sdm120", "electric", "modbus", _modbus("SDM120"), "Eastron SDM120, Modbus RTU"
        ),
        ProtocolInfo(
            "sdm630", "electric", "modbus", _modbus("SDM630"), "Eastron SDM630, Modbus RTU"
        ),
        ProtocolInfo(
            "ddsu666", "electric", "modbus", _modbus("DDSU666"), "Chint DDSU666, Modbus RTU"
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


def driver_for(name: str, settings: SerialSettings | None = None) -> MeterDriver:
    """A driver for protocol `name` on a line with `settings` (None: the protocol's default)."""
    return protocol(name).make(settings)


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
