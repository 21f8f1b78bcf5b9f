"""A bus's driver options in `site.toml`: for all its meters, and per meter over those.

    [[buses]]
    name = "rs485-2"
    protocol = "sdm120"
    relay = "voltbook-sim"          # Modbus: the relay variant (modbus_maps.RELAY_MAPS), "none"
    [buses.meter_options."3"]       # one meter that differs, by its address
    relay = "none"

    [[buses]]
    name = "rs485-3"
    protocol = "cjt188"
    meter_type = 0x11               # CJ/T 188: the meter type byte (0x10 cold, 0x11 hot water…)
    di_order = "901F"               # CJ/T 188: DI bytes high first (default "1F90", low first)

    [[buses]]
    name = "rs485-1"
    protocol = "dlt645"
    blocks = "standard"             # DL/T 645: block DIs the meters answer (default "none")

Which protocol takes which option, and which values it knows, is the drivers' table
(`edge.drivers.registry.options_problem`); this module reads the fields and turns the drivers'
refusal into a `SiteConfigError` naming the bus (and the meter). They live in `site.toml`, not
in the configuration documents the cloud pushes: they describe the hardware the installer wired
to that port, which the cloud's registry does not know and a push must not erase.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from edge.drivers.errors import DriverUsageError
from edge.drivers.registry import DriverOptions, check_address, options_problem
from edge.site.errors import SiteConfigError
from edge.site.fields import Fields


def parse_options(f: Fields, proto: str) -> DriverOptions:
    """The driver options among the fields of `f` (a bus or a meter's table), checked."""
    options = DriverOptions(
        relay=f.text("relay", None),
        meter_type=f.integer("meter_type", None, low=0, high=0xFF),
        di_order=f.text("di_order", None),
        blocks=f.text("blocks", None),
    )
    problem = options_problem(proto, options)
    if problem is not None:
        raise SiteConfigError(f.path, f"{f.where}: {problem}")
    return options


def parse_meter_options(bus: Fields, proto: str) -> Mapping[str, DriverOptions]:
    """`meter_options`: a table of meter address → that meter's options, by normalised address."""
    raw = bus.table("meter_options", {})
    out: dict[str, DriverOptions] = {}
    for key, table in raw.items():
        where = f"{bus.where} meter {key!r}"
        try:
            address = check_address(proto, key)
        except DriverUsageError as exc:
            raise SiteConfigError(bus.path, f"{where}: {exc}") from None
        if address in out:
            raise SiteConfigError(bus.path, f"{where}: meter {address} has options twice")
        f = Fields(bus.path, where, table)
        out[address] = parse_options(f, proto)
        f.unknown()
    return MappingProxyType(out)
