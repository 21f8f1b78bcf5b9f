"""CJ/T 188-2004 water meters: a sans-I/O codec and the `cjt188` driver.

Frame (no +0x33 offset, unlike DL/T 645)::

    FE … FE | 68 | T | A0 … A6 | C | L | DI0 DI1 | SER | DATA … | CS | 16
    preamble  start type address  ctl len  data identifier  serial           sum  end
              1 B   1 B  7 B BCD   1 B 1 B  ←—————————— L bytes ——————→   1 B  1 B

    CS = sum of the bytes from 68 to the last DATA byte, mod 256.
    Address: 14 BCD digits, lowest byte first on the wire ("AA…AA" = any meter).
    C: 01 read (reply 81, error C1), 03 read address, 04 write (reply 84, error C4), …

    read 901F  68 10 44 33 22 11 00 33 78 01 03 1F 90 00 80 16
               type 10 (cold water), meter 78330011223344, C 01, L 3, DI 901F, SER 00

The two DI bytes travel in different orders in the wild (`1F 90` in the standard's example,
`90 1F` in much field code), so a `Frame` keeps them as received (`Frame.di`), `has_di`
accepts both orders, and the order we *send* is a per-meter setting (`MeterOptions.di_order`,
named after how 0x901F looks on the wire).

`Decoder` is fed whatever bytes arrived and hands out frames: it skips the FE preamble and
noise, checks length, checksum and terminator, and after a bad candidate drops only its start
byte, so a real frame hiding behind a stray 0x68 is still found. A candidate that is still
incomplete when a complete, valid frame is found behind it was garbage and is reported so.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

from edge.drivers.base import Conversation, SerialSettings
from edge.drivers.cjt188_items import (
    ANY_METER_TYPE,
    BLOCKS,
    COLD_WATER,
    ERROR_BIT,
    METERING,
    READ_ADDRESS,
    REPLY_BIT,
    STATUS_FLAGS,
    UNITS,
    VALVE,
    VALVE_BITS_MASK,
    VALVE_STATE_BITS,
    VALVE_STATES,
    WILDCARD_ADDRESS,
    Control,
    DataItem,
    ValveCommand,
    error_control,
    reply_control,
)
from edge.drivers.errors import (
    ChecksumError,
    DriverUsageError,
    FrameError,
    MeterError,
    MeterRefused,
    MeterTimeout,
    PeerError,
    RelayNotConfirmed,
)
from edge.drivers.reading import Reading, ValveState

__all__ = [
    "CHINA_STANDARD_TIME",
    "CJT188",
    "DI_ORDERS",
    "Cjt188Transaction",
    "Decoder",
    "DiOrder",
    "Frame",
    "MeterOptions",
    "decode_bcd",
    "decode_datetime",
    "decode_status",
    "decode_volume_l",
    "encode",
    "encode_bcd",
    "encode_datetime",
    "encode_status",
    "metering_reading",
    "read_address_request",
    "read_request",
    "valve_request",
    "wire_di",
]

START = 0x68
END = 0x16
PREAMBLE_BYTE = 0xFE
HEADER_SIZE = 11  # 68 T A0..A6 C L
OVERHEAD = HEADER_SIZE + 2  # + CS 16
MIN_DATA = 3  # DI0 DI1 SER
MAX_FRAME = OVERHEAD + 0xFF

# Battery water meters wake their UART on the preamble and answer slowly; half a second
# covers the slow ones seen in the field without stalling a bus of dead meters for long.
TURNAROUND_S = 0.5
REPLY_PREAMBLE_ALLOWANCE = 4  # FE bytes a meter may put before its reply

# China has no daylight saving time: Asia/Shanghai is UTC+8 all year, and this needs no tz
# database on the concentrator.
CHINA_STANDARD_TIME = dt.timezone(dt.timedelta(hours=8), "CST")

DiOrder = Literal["1F90", "901F"]  # 0x901F on the wire: low byte first, or high byte first
DI_ORDERS: tuple[DiOrder, ...] = get_args(DiOrder)

_ADDRESS = re.compile(r"[0-9A-F]{14}")


# --- frames ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    meter_type: int
    address: str  # 14 hex digits as printed on the meter, most significant first
    control: int
    di: bytes  # the two DI bytes in wire order
    ser: int
    data: bytes = b""  # after DI and SER

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY_BIT)

    @property
    def is_error(self) -> bool:
        return self.is_reply and bool(self.control & ERROR_BIT)

    def has_di(self, di: int) -> bool:
        """True if the DI bytes are `di` in either byte order."""
        return self.di in (wire_di(di, "1F90"), wire_di(di, "901F"))


def wire_di(di: int, order: DiOrder) -> bytes:
    return di.to_bytes(2, "little" if order == "1F90" else "big")


def address_to_wire(address: str) -> bytes:
    if not _ADDRESS.fullmatch(address):
        raise DriverUsageError(f"CJ/T 188 address must be 14 hex digits, got {address!r}")
    return bytes.fromhex(address)[::-1]


def encode(frame: Frame) -> bytes:
    """The wire bytes of a frame, from 68 to 16 (no preamble)."""
    if len(frame.di) != 2:
        raise DriverUsageError(f"DI must be 2 bytes, got {frame.di.hex()}")
    payload = frame.di + bytes([frame.ser]) + frame.data
    if len(payload) > 0xFF:
        raise DriverUsageError(f"data too long for one frame ({len(payload)} bytes)")
    head = bytes([START, frame.meter_type]) + address_to_wire(frame.address)
    body = head + bytes([frame.control, len(payload)]) + payload
    return body + bytes([sum(body) & 0xFF, END])


class Decoder:
    """Sans-I/O frame decoder: `feed()` bytes, call `next_frame()` until it returns None.

    `next_frame()` raises `ChecksumError` or `FrameError` for a bad candidate after dropping
    it, so calling it again carries on with the bytes behind.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.noise = 0  # bytes skipped that were neither preamble nor frame

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > 2 * MAX_FRAME:
            self._skip(len(self._buffer) - 2 * MAX_FRAME)

    def _skip(self, count: int) -> None:
        self.noise += sum(1 for b in self._buffer[:count] if b != PREAMBLE_BYTE)
        del self._buffer[:count]

    def _complete_at(self, offset: int) -> bool:
        """True if a whole, valid frame starts at `offset`."""
        buf = self._buffer
        if len(buf) - offset < OVERHEAD or buf[offset] != START:
            return False
        size = OVERHEAD + buf[offset + 10]
        if len(buf) - offset < size:
            return False
        frame = buf[offset : offset + size]
        return frame[-1] == END and sum(frame[:-2]) & 0xFF == frame[-2]

    def next_frame(self) -> Frame | None:
        buf = self._buffer
        start = buf.find(START)
        if start < 0:
            self._skip(len(buf))
            return None
        self._skip(start)
        if len(buf) < HEADER_SIZE:
            return None
        size = OVERHEAD + buf[10]
        if len(buf) < size:
            later = next((j for j in range(1, len(buf)) if self._complete_at(j)), None)
            if later is None:
                return None
            self._skip(later)
            raise FrameError("incomplete frame cut off by the next frame")
        raw = bytes(buf[:size])
        if raw[-1] != END:
            self._skip(1)
            raise FrameError(f"no 16 terminator in {raw.hex(' ')}")
        if sum(raw[:-2]) & 0xFF != raw[-2]:
            self._skip(1)
            raise ChecksumError(
                f"checksum {raw[-2]:02X}, expected {sum(raw[:-2]) & 0xFF:02X} in {raw.hex(' ')}"
            )
        del buf[:size]
        if raw[10] < MIN_DATA:
            raise FrameError(f"frame too short for DI and SER: {raw.hex(' ')}")
        return Frame(
            meter_type=raw[1],
            address=raw[2:9][::-1].hex().upper(),
            control=raw[9],
            di=raw[11:13],
            ser=raw[13],
            data=raw[14:-2],
        )


# --- values ------------------------------------------------------------------------------


def decode_bcd(data: bytes, *, address: str | None = None, item: str | None = None) -> int:
    """Unsigned BCD, lowest byte first."""
    value = 0
    for byte in reversed(data):
        high, low = byte >> 4, byte & 0x0F
        if high > 9 or low > 9:
            raise FrameError(f"not BCD: {data.hex(' ')}", address=address, item=item)
        value = value * 100 + high * 10 + low
    return value


def encode_bcd(value: int, length: int) -> bytes:
    digits = f"{value:0{2 * length}d}"
    if value < 0 or len(digits) > 2 * length:
        raise DriverUsageError(f"{value} does not fit {length} BCD bytes")
    return bytes.fromhex(digits)[::-1]


def decode_volume_l(data: bytes, *, address: str | None = None, item: str = "volume") -> int:
    """4 bytes BCD XXXXXX.XX + unit code → integer litres (rounded down: a cumulative register
    is never ahead of the water that went through)."""
    hundredths = decode_bcd(data[:4], address=address, item=item)
    unit = UNITS.get(data[4])
    if unit is None or unit.litres is None:
        name = unit.symbol if unit else f"0x{data[4]:02X}"
        raise PeerError(f"unit {name} is not a volume unit", address=address, item=item)
    litres = hundredths * unit.litres / 100
    return litres.numerator // litres.denominator


def decode_datetime(
    data: bytes, tz: dt.tzinfo, *, address: str | None = None
) -> dt.datetime | None:
    """ss mm hh DD MM YYlo YYhi (BCD) → aware datetime; all zeros (no clock) → None."""
    if not any(data):
        return None
    second, minute, hour, day, month = (
        decode_bcd(data[i : i + 1], address=address, item="time") for i in range(5)
    )
    year = decode_bcd(data[5:7], address=address, item="time")
    try:
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        raise FrameError(
            f"invalid meter time {data.hex(' ')}", address=address, item="time"
        ) from exc


def encode_datetime(when: dt.datetime) -> bytes:
    parts = (when.second, when.minute, when.hour, when.day, when.month)
    return b"".join(encode_bcd(p, 1) for p in parts) + encode_bcd(when.year, 2)


def decode_status(data: bytes) -> tuple[ValveState, frozenset[str]]:
    first = data[0]
    flags = frozenset(name for bit, name in STATUS_FLAGS.items() if first & bit)
    return VALVE_STATES[first & VALVE_BITS_MASK], flags


def encode_status(valve: ValveState, *, battery_low: bool = False) -> bytes:
    first = VALVE_STATE_BITS[valve] | (0x04 if battery_low else 0)
    return bytes([first, 0])


def metering_reading(frame: Frame, *, tz: dt.tzinfo = CHINA_STANDARD_TIME) -> Reading:
    """The `Reading` of a 901F reply: volume, valve, status and the meter's clock."""
    data = frame.data
    if len(data) < METERING.reply_length:
        raise FrameError(
            f"901F reply has {len(data)} data bytes, needs {METERING.reply_length}",
            address=frame.address,
            item=METERING.name,
        )
    values: dict[str, bytes] = {}
    offset = 0
    for spec in METERING.reply:
        values[spec.name] = data[offset : offset + spec.length]
        offset += spec.length
    address = frame.address
    volume_l = decode_volume_l(values["current_volume"], address=address, item="current_volume")
    settlement_l = decode_volume_l(
        values["settlement_volume"], address=address, item="settlement_volume"
    )
    meter_time = decode_datetime(values["meter_time"], tz, address=address)
    status = values["status"]
    valve, flags = decode_status(status)
    return Reading(
        address=frame.address,
        volume_l=volume_l,
        valve=valve,
        status_words=(int.from_bytes(status, "little"),),
        event_flags=flags,
        counters=(("settlement_volume_l", settlement_l),),
        meter_time=meter_time,
    )


# --- requests ----------------------------------------------------------------------------


def read_request(
    address: str, *, ser: int = 0, meter_type: int = COLD_WATER, di_order: DiOrder = "1F90"
) -> Frame:
    return Frame(meter_type, address, Control.READ, wire_di(METERING.di, di_order), ser)


def read_address_request(*, ser: int = 0, di_order: DiOrder = "1F90") -> Frame:
    di = wire_di(READ_ADDRESS.di, di_order)
    return Frame(ANY_METER_TYPE, WILDCARD_ADDRESS, Control.READ_ADDRESS, di, ser)


def valve_request(
    address: str,
    command: ValveCommand,
    *,
    ser: int = 0,
    meter_type: int = COLD_WATER,
    di_order: DiOrder = "1F90",
    control: int = Control.WRITE,
) -> Frame:
    di = wire_di(VALVE.di, di_order)
    return Frame(meter_type, address, control, di, ser, bytes([command]))


# --- transactions and driver -------------------------------------------------------------


def _refusal_reasons(frame: Frame) -> tuple[tuple[str, ...], int]:
    """Reasons and code of an error reply: its status byte when it carries one."""
    if not frame.data:
        return ("error reply",), frame.control
    valve, flags = decode_status(frame.data)
    return ("error reply", f"valve {valve}", *sorted(flags)), frame.data[0]


class Cjt188Transaction:
    """One request and the hunt for its reply (`edge.drivers.base.Exchange`)."""

    def __init__(
        self,
        request: Frame,
        *,
        item: DataItem,
        settings: SerialSettings,
        preamble: bytes,
    ) -> None:
        self.frame = request
        self._item = item
        self._request = preamble + encode(request)
        self._settings = settings
        self._wildcard = request.address == WILDCARD_ADDRESS
        self._decoder = Decoder()
        self._reply: Frame | None = None
        self._error: PeerError | None = None
        self._rejected: MeterError | None = None  # last bad frame heard, for the timeout
        self._received = 0

    @property
    def address(self) -> str:
        return self.frame.address

    @property
    def request(self) -> bytes:
        return self._request

    @property
    def expects_reply(self) -> bool:
        return True

    @property
    def reply_timeout(self) -> float:
        reply_bytes = REPLY_PREAMBLE_ALLOWANCE + OVERHEAD + MIN_DATA + self._item.reply_length
        return TURNAROUND_S + reply_bytes * self._settings.byte_time

    def feed(self, data: bytes) -> None:
        self._received += len(data)
        while not self.done():
            self._decoder.feed(data)
            data = b""
            try:
                frame = self._decoder.next_frame()
            except FrameError as exc:
                self._rejected = exc
                continue
            if frame is None:
                return
            self._consider(frame)

    def _consider(self, frame: Frame) -> None:
        request = self.frame
        if not frame.is_reply:
            return  # a request: our own echo or another master's
        if not self._wildcard and frame.address != request.address:
            return  # another meter's reply
        if not frame.has_di(self._item.di):
            return
        if frame.control == reply_control(request.control):
            self._reply = frame
        elif frame.control == error_control(request.control):
            reasons, code = _refusal_reasons(frame)
            self._error = MeterRefused(
                reasons, code=code, address=frame.address, item=self._item.name
            )

    def done(self) -> bool:
        return self._reply is not None or self._error is not None

    def result(self) -> Frame:
        if self._error is not None:
            raise self._error
        if self._reply is not None:
            return self._reply
        if isinstance(self._rejected, ChecksumError):
            raise ChecksumError(
                f"only a corrupt reply heard: {self._rejected}",
                address=self.address,
                item=self._item.name,
            )
        raise MeterTimeout(
            f"no reply ({self._received} bytes heard)", address=self.address, item=self._item.name
        )


@dataclass(frozen=True, slots=True)
class MeterOptions:
    """What differs between CJ/T 188 meters of different makes."""

    meter_type: int = COLD_WATER
    di_order: DiOrder = "1F90"
    valve_control: int = Control.WRITE  # some field devices use 0x2A


DEFAULT_SETTINGS = SerialSettings(baudrate=2400, parity="E", bytesize=8, stopbits=1)


class CJT188:
    """The `cjt188` driver: read 901F, read the address, open and close the valve.

    `options` apply to every meter, `per_meter` overrides them by address. The driver keeps
    the SER counter, so one instance serves one bus.
    """

    def __init__(
        self,
        settings: SerialSettings | None = None,
        *,
        options: MeterOptions | None = None,
        per_meter: Mapping[str, MeterOptions] | None = None,
        preamble: bytes = b"\xfe\xfe",
        meter_tz: dt.tzinfo = CHINA_STANDARD_TIME,
        blocks: Mapping[str, DataItem] = BLOCKS,
    ) -> None:
        self.settings = settings or DEFAULT_SETTINGS
        self.block_items: Mapping[str, DataItem] = MappingProxyType(dict(blocks))
        self.options = options or MeterOptions()
        self.per_meter: Mapping[str, MeterOptions] = MappingProxyType(dict(per_meter or {}))
        self.preamble = preamble
        self.meter_tz = meter_tz
        self._ser = 0

    @property
    def name(self) -> str:
        return "cjt188"

    @property
    def default_settings(self) -> SerialSettings:
        return DEFAULT_SETTINGS

    @property
    def blocks(self) -> frozenset[str]:
        return frozenset(self.block_items)

    @property
    def items(self) -> frozenset[str]:
        return frozenset({METERING.name})  # the one item a CJ/T 188 meter is read by

    def with_blocks(self, blocks: Mapping[str, tuple[str, ...]]) -> CJT188:
        """This driver with site-defined blocks too (each is the metering item)."""
        for name, items in blocks.items():
            if set(items) != self.items:
                raise DriverUsageError(
                    f"cjt188 reads only {METERING.name!r} in a block, not {list(items)}",
                    item=name,
                )
        return CJT188(
            self.settings,
            options=self.options,
            per_meter=self.per_meter,
            preamble=self.preamble,
            meter_tz=self.meter_tz,
            blocks={**self.block_items, **dict.fromkeys(blocks, METERING)},
        )

    def options_for(self, address: str) -> MeterOptions:
        return self.per_meter.get(address, self.options)

    def _next_ser(self) -> int:
        ser = self._ser
        self._ser = (ser + 1) & 0xFF
        return ser

    def _tx(self, request: Frame, item: DataItem) -> Cjt188Transaction:
        return Cjt188Transaction(request, item=item, settings=self.settings, preamble=self.preamble)

    def _checked(self, address: str) -> str:
        if not re.fullmatch(r"[0-9]{14}", address):
            raise DriverUsageError(
                f"CJ/T 188 meter address must be 14 digits, got {address!r}", address=address
            )
        return address

    def read(self, address: str, block: str = "basic") -> Conversation[Reading]:
        self._checked(address)
        if block not in self.block_items:
            known = ", ".join(sorted(self.block_items))
            raise DriverUsageError(f"cjt188 has no block {block!r} (known: {known})")
        return self._read(address)

    def _read(self, address: str) -> Conversation[Reading]:
        opts = self.options_for(address)
        request = read_request(
            address, ser=self._next_ser(), meter_type=opts.meter_type, di_order=opts.di_order
        )
        tx = yield self._tx(request, METERING)
        return metering_reading(tx.result(), tz=self.meter_tz)

    def read_address(self) -> Conversation[str]:
        """The address of the one meter on the bus (wildcard request; one meter only)."""
        return self._read_address()

    def _read_address(self) -> Conversation[str]:
        request = read_address_request(ser=self._next_ser(), di_order=self.options.di_order)
        tx = yield self._tx(request, READ_ADDRESS)
        frame: Frame = tx.result()
        return frame.address

    def relay(self, address: str, action: Literal["trip", "close"]) -> Conversation[ValveState]:
        """Trip = close the valve, close = open it (the relay's sense: supply on or off)."""
        self._checked(address)
        if action not in _VALVE_ACTIONS:
            raise DriverUsageError(f"relay action must be trip or close, got {action!r}")
        return self._valve(address, action)

    def _valve(self, address: str, action: Literal["trip", "close"]) -> Conversation[ValveState]:
        command, wanted = _VALVE_ACTIONS[action]
        opts = self.options_for(address)
        request = valve_request(
            address,
            command,
            ser=self._next_ser(),
            meter_type=opts.meter_type,
            di_order=opts.di_order,
            control=opts.valve_control,
        )
        tx = yield self._tx(request, VALVE)
        tx.result()
        reading = yield from self._read(address)
        if reading.valve is not wanted:
            raise RelayNotConfirmed(
                f"valve {command.name.lower()} acknowledged but the valve reads {reading.valve}",
                address=address,
                item="valve",
            )
        return wanted


_VALVE_ACTIONS: Mapping[str, tuple[ValveCommand, ValveState]] = MappingProxyType(
    {
        "trip": (ValveCommand.CLOSE, ValveState.CLOSED),
        "close": (ValveCommand.OPEN, ValveState.OPEN),
    }
)
