"""`voltbook-edge read | relay | scan | sync-time`: talk to meters on a serial port by hand.

For installers and for scripts: every command names the port, the protocol and (except scan
and sync-time) the meter's address as printed on it. `--json` prints one JSON object on
stdout. Failures (no answer, refused, garbled replies, a port that will not open) print one
sentence naming the meter and the cause on stderr and exit non-zero: 1 when the meter or the
line failed, 2 when the command itself was wrong.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from enum import Enum
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.cli_runtime import moment
from edge.drivers.base import MeterDriver, SerialSettings
from edge.drivers.bus import SerialBus
from edge.drivers.cjt188 import DI_ORDERS
from edge.drivers.discovery import discover, sync_time
from edge.drivers.dlt645_blocks import BLOCK_SUPPORT
from edge.drivers.dlt645_meter import Dlt645Driver
from edge.drivers.errors import DriverUsageError, MeterError, RelayNotConfirmed
from edge.drivers.reading import Reading
from edge.drivers.registry import PROTOCOLS, DriverOptions, check_address, driver_for, protocol
from edge.site.model import BILLING_BLOCK

EXIT_METER: Final = 1  # the meter or the line failed
EXIT_USAGE: Final = 2  # the command was wrong (argparse uses 2 as well)

ELECTRIC_FIELDS: Final = (
    "address",
    "energy_wh",
    "voltage_v",
    "current_a",
    "power_w",
    "power_factor",
    "frequency_hz",
    "relay",
)
WATER_FIELDS: Final = ("address", "volume_l", "valve")

PROTOCOL_HELP: Final = "; ".join(
    f"{p.name}: {p.summary}, default {p.default_settings.baudrate} "
    f"{p.default_settings.bytesize}{p.default_settings.parity}{p.default_settings.stopbits}"
    for p in PROTOCOLS.values()
)


def _line_options(parser: argparse.ArgumentParser, *, protocols: tuple[str, ...]) -> None:
    parser.add_argument(
        "--port", required=True, help="serial port, e.g. /dev/ttyUSB0 or /dev/pts/3"
    )
    parser.add_argument(
        "--protocol", required=True, choices=protocols, help=f"meter protocol ({PROTOCOL_HELP})"
    )
    parser.add_argument(
        "--baud", type=int, help="baud rate (default: the protocol's, e.g. 2400 for DL/T 645)"
    )
    parser.add_argument(
        "--parity",
        choices=("E", "N"),
        help="parity: E even (8E1) or N none (8N1) (default: the protocol's)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="times to repeat a request that got no valid reply (default: 2)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _driver_options(parser: argparse.ArgumentParser) -> None:
    """The driver options of site.toml's buses (`edge.drivers.registry.DriverOptions`)."""
    parser.add_argument(
        "--relay",
        help="sdm120/sdm630/ddsu666: the meter's relay variant, as `relay` in site.toml "
        "(default: none, the relay is neither read nor commanded)",
    )
    parser.add_argument(
        "--meter-type",
        type=lambda text: int(text, 0),
        help="cjt188: the meter type byte, e.g. 0x11 for hot water (default 0x10, cold water)",
    )
    parser.add_argument(
        "--di-order",
        choices=DI_ORDERS,
        help="cjt188: how DI 0x901F goes on the wire (default 1F90, low byte first)",
    )
    parser.add_argument(
        "--blocks",
        choices=tuple(BLOCK_SUPPORT),
        help="dlt645: the block DIs the meter answers, as `blocks` in site.toml (default none)",
    )


def _driver(args: argparse.Namespace, settings: SerialSettings) -> MeterDriver:
    options = DriverOptions(
        relay=args.relay, meter_type=args.meter_type, di_order=args.di_order, blocks=args.blocks
    )
    return driver_for(args.protocol, settings, options)


def _address_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        required=True,
        help="the meter's number as printed on it (12 digits DL/T 645, 14 CJ/T 188) "
        "or its Modbus unit id (1..247)",
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    every = tuple(PROTOCOLS)
    read = commands.add_parser(
        "read",
        help="read one meter: energy, voltage, current, power, relay (or volume and valve)",
        description=(
            "Read a block of one meter and print it. With --json, one object: address, "
            "energy_wh (integer Wh), voltage_v, current_a, power_w, power_factor, frequency_hz "
            "and relay (open/closed/null); for water meters address, volume_l (integer litres) "
            "and valve. Fields the meter does not report are null. Another --block prints "
            "address, block and the values that block read (e.g. clock: meter_time; status: "
            "status_words, event_flags, relay; abnormal_trips: counters; power: power_w, "
            "power_factor)."
        ),
        epilog="example: voltbook-edge read --port /dev/ttyUSB0 --protocol dlt645 "
        "--address 202611000101 --json",
    )
    _line_options(read, protocols=every)
    _driver_options(read)
    _address_option(read)
    read.add_argument(
        "--block",
        default=BILLING_BLOCK,
        help="reading block to read (default: basic; e.g. energy, power, clock, status, "
        "abnormal_trips)",
    )
    read.set_defaults(func=run_read)

    relay = commands.add_parser(
        "relay",
        help="trip or close a meter's relay (a water meter's valve) and confirm it",
        description=(
            "Command the relay, then read its state back. Exits 0 only when the meter confirms "
            "the commanded state (trip: open, power cut; close: closed, power on). For a water "
            "meter, trip closes the valve and close opens it."
        ),
        epilog="example: voltbook-edge relay --port /dev/ttyUSB0 --protocol dlt645 "
        "--address 202611000101 trip",
    )
    _line_options(relay, protocols=every)
    _driver_options(relay)
    _address_option(relay)
    relay.add_argument("action", choices=("trip", "close"), help="trip: cut power; close: restore")
    relay.set_defaults(func=run_relay)

    scan = commands.add_parser(
        "scan",
        help="find the DL/T 645 meters on a bus",
        description=(
            "List the addresses of the meters on the bus, one per line (or a JSON object with "
            "--json). One meter answers the wildcard read-address; several are found by "
            "probing address suffixes (high bytes AA), narrowing digit pair by digit pair "
            "where replies collide. Shows progress on stderr; bounded by --time-limit."
        ),
        epilog="example: voltbook-edge scan --port /dev/ttyUSB0 --protocol dlt645",
    )
    _line_options(scan, protocols=("dlt645", "dlt645-1997"))
    scan.add_argument(
        "--window",
        type=float,
        default=0.5,
        help="seconds each probe listens for replies (default 0.5, the standard's maximum "
        "turnaround; quick meters allow less)",
    )
    scan.add_argument(
        "--time-limit", type=float, default=900.0, help="give up after this many seconds"
    )
    scan.add_argument(
        "--exhaustive",
        action="store_true",
        help="search by suffix even when one meter answered the wildcard",
    )
    scan.set_defaults(func=run_scan)

    sync = commands.add_parser(
        "sync-time",
        help="set the clock of every DL/T 645 meter on a bus (broadcast)",
        description="Broadcast the time (DL/T 645 function 08); meters do not answer.",
    )
    _line_options(sync, protocols=("dlt645", "dlt645-1997"))
    sync.add_argument(
        "--time",
        type=moment,
        help="time to set, ISO 8601 with its UTC offset (default: now); converted to --zone",
    )
    sync.add_argument(
        "--zone",
        type=_zone,
        default=ZoneInfo(METER_ZONE),
        help=f"the zone the meters keep local time in, the site's (default {METER_ZONE})",
    )
    sync.set_defaults(func=run_sync_time)


# --- shared plumbing -------------------------------------------------------------------------

METER_ZONE: Final = "Asia/Shanghai"  # the default site zone (docs/architecture.md §4)


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{name!r} is not a time zone (e.g. Asia/Shanghai)"
        ) from None


def _settings(args: argparse.Namespace) -> SerialSettings:
    base = protocol(args.protocol).default_settings
    return SerialSettings(
        baudrate=args.baud or base.baudrate,
        parity=args.parity or base.parity,
        bytesize=base.bytesize,
        stopbits=base.stopbits,
    )


def _fail(message: str, code: int) -> int:
    text = message.rstrip(".")
    print(f"error: {text}.", file=sys.stderr)
    return code


def _guarded(args: argparse.Namespace, who: str, action: Callable[[], int]) -> int:
    """Run `action`; turn our errors into one sentence naming the meter and an exit code."""
    try:
        return action()
    except MeterError as exc:
        # An error that names no meter (a port that will not open, a bad address) is said
        # about the meter or bus the command was for.
        text = str(exc) if exc.address else f"{who}: {str(exc).removeprefix('bus: ')}"
        return _fail(text, EXIT_USAGE if isinstance(exc, DriverUsageError) else EXIT_METER)
    except KeyboardInterrupt:
        return _fail(f"{who}: interrupted", 130)


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(json.dumps(payload, ensure_ascii=False) if args.json else text, flush=True)


# --- commands --------------------------------------------------------------------------------


def reading_fields(reading: Reading, kind: str) -> dict[str, Any]:
    """The JSON contract of `read`: electricity or water fields, enums as their values."""
    names = WATER_FIELDS if kind == "water" else ELECTRIC_FIELDS
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(reading, name)
        out[name] = value.value if isinstance(value, Enum) else value
    return out


def _json_value(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted(value)
    return list(value) if isinstance(value, tuple) else value


def block_fields(reading: Reading, block: str) -> dict[str, Any]:
    """What `read --block X` prints for a block other than `basic`: the values it read (a
    field the block does not fill is left out, counters as an object)."""
    out: dict[str, Any] = {"address": reading.address, "block": block}
    for name in reading.__slots__:
        value = getattr(reading, name)
        if name == "address" or value in (None, (), frozenset()):
            continue
        if name == "energy_error_wh" and not value:
            continue
        out[name] = dict(value) if name == "counters" else _json_value(value)
    return out


def _text(fields: dict[str, Any]) -> str:
    def shown(value: object) -> object:
        if value is None:
            return "-"
        if isinstance(value, dict):
            return ", ".join(f"{k} {v}" for k, v in value.items())
        if isinstance(value, list):
            return ", ".join(map(str, value))
        return value

    width = max(13, *map(len, fields))
    return "\n".join(f"{k:>{width}}: {shown(v)}" for k, v in fields.items())


def run_read(args: argparse.Namespace) -> int:
    def action() -> int:
        address = check_address(args.protocol, args.address)
        settings = _settings(args)
        driver = _driver(args, settings)
        with SerialBus(args.port, settings, retries=args.retries) as bus:
            reading: Reading = bus.run(driver.read(address, args.block), address=address)
        if args.block == BILLING_BLOCK:
            fields = reading_fields(reading, protocol(args.protocol).kind)
        else:
            fields = block_fields(reading, args.block)
        _emit(args, fields, _text(fields))
        return 0

    return _guarded(args, f"meter {args.address}", action)


def run_relay(args: argparse.Namespace) -> int:
    def action() -> int:
        address = check_address(args.protocol, args.address)
        settings = _settings(args)
        driver = _driver(args, settings)
        water = protocol(args.protocol).kind == "water"
        with SerialBus(args.port, settings, retries=args.retries) as bus:
            state = bus.run(driver.relay(address, args.action), address=address)
        wanted = "closed" if (args.action == "close") != water else "open"
        if state.value != wanted:  # the driver confirms; never trust a state we did not expect
            raise RelayNotConfirmed(
                f"commanded {args.action}, meter reports {state.value}", address=address
            )
        part = "valve" if water else "relay"
        _emit(
            args,
            {"address": address, part: state.value, "confirmed": True},
            f"meter {address}: {part} {state.value} (confirmed by read-back)",
        )
        return 0

    return _guarded(args, f"meter {args.address}", action)


def run_scan(args: argparse.Namespace) -> int:
    def progress(message: str) -> None:
        print(f"scan: {message}", file=sys.stderr, flush=True)

    def action() -> int:
        settings = _settings(args)
        driver = driver_for(args.protocol, settings)
        assert isinstance(driver, Dlt645Driver)  # scan offers DL/T 645 protocols only
        # A probe ends when its window has passed in silence, not after DL/T 645's 500 ms gap.
        gap = min(args.window, 0.5)
        with SerialBus(args.port, settings, retries=args.retries, byte_gap=gap) as bus:
            found = discover(
                bus,
                driver,
                window=args.window,
                time_limit=args.time_limit,
                exhaustive=args.exhaustive,
                progress=progress,
            )
        payload = {
            "port": args.port,
            "protocol": args.protocol,
            "addresses": list(found.addresses),
            "probes": found.probes,
            "elapsed_s": round(found.elapsed_s, 2),
            "complete": found.complete,
        }
        _emit(args, payload, "\n".join(found.addresses))
        progress(
            f"{len(found.addresses)} meters in {found.elapsed_s:.1f} s ({found.probes} probes)"
            + ("" if found.complete else "; stopped at the time limit, the list may be partial")
        )
        return 0 if found.complete else EXIT_METER

    return _guarded(args, f"bus {args.port}", action)


def run_sync_time(args: argparse.Namespace) -> int:
    def action() -> int:
        settings = _settings(args)
        driver = driver_for(args.protocol, settings)
        assert isinstance(driver, Dlt645Driver)
        # Meters keep naive local time: the instant given is converted to their zone, never
        # relabelled (2026-11-01T00:00+00:00 is 08:00 on a meter in Asia/Shanghai).
        zone: dt.tzinfo = args.zone
        when = (args.time or dt.datetime.now(zone)).astimezone(zone)
        with SerialBus(args.port, settings) as bus:
            sync_time(bus, driver, when)
        stamp = when.isoformat(timespec="seconds")
        _emit(args, {"port": args.port, "time": stamp}, f"broadcast time {stamp} on {args.port}")
        return 0

    return _guarded(args, f"bus {args.port}", action)
