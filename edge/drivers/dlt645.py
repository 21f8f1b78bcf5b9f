"""DL/T 645-2007 and -1997 frames, sans-I/O: bytes in, `Frame`s out; `Frame`s in, bytes out.

Wire layout (every frame, both versions)::

     0..4   1    6 (A0 first)    1    1    1     L           1    1
    +------+----+---------------+----+----+----+-----------+----+----+
    | FE.. | 68 | A0 A1 .. A5   | 68 | C  | L  | DATA+0x33 | CS | 16 |
    +------+----+---------------+----+----+----+-----------+----+----+
     wake    |   12 BCD digits,   |    |    |     each byte    |
     -up     |   lowest byte 1st  |    |    |     sent +0x33   |
             +---------- CS = sum mod 256 of these ----------+

    C:  D7 direction (1 = reply) | D6 error reply | D5 more frames follow | D4..D0 function

A `Frame` holds the address as printed on the meter (`"123456789012"`), the control byte and
the data already reduced by 0x33. `encode_frame` adds the preamble, offset, checksum and end
marker; `Decoder` takes whatever bytes arrived, skips preamble and line noise, checks checksum
and terminator and resynchronises on the next 0x68 after garbage (the way pymodbus's RTU framer
hunts for a frame), counting what it threw away so the bus can report line quality.

Request encoders (one per function) live in `edge.drivers.dlt645_requests`, data items in
`edge.drivers.dlt645_items`, the conversations in `edge.drivers.dlt645_meter`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from edge.drivers.errors import ChecksumError, DriverUsageError, FrameError

START: Final = 0x68
END: Final = 0x16
WAKE_UP: Final = 0xFE
DATA_OFFSET: Final = 0x33
HEADER_LENGTH: Final = 10  # 68, six address bytes, 68, C, L
OVERHEAD: Final = 12  # header + CS + 16
MAX_DATA_LENGTH: Final = 200  # L <= 200 for reads (the largest frames the standard allows)
DEFAULT_PREAMBLE: Final = 4

WILDCARD: Final = "AAAAAAAAAAAA"  # read/write address (13/15) to whoever is on the bus
BROADCAST: Final = "999999999999"  # broadcast time and freeze; nobody answers

REPLY: Final = 0x80
ERROR: Final = 0x40
MORE_FOLLOWS: Final = 0x20
FUNCTION_MASK: Final = 0x1F

# Error byte of an error reply (C | 0xC0): bit → reason.
ERROR_REASONS: Final[tuple[tuple[int, str], ...]] = (
    (0x01, "other"),
    (0x02, "no_such_data"),
    (0x04, "unauthorised"),
    (0x08, "baud_not_changeable"),
    (0x10, "too_many_year_zones"),
    (0x20, "too_many_day_slots"),
    (0x40, "too_many_tariffs"),
)

_PLUS_33: Final = bytes((b + DATA_OFFSET) & 0xFF for b in range(256))
_MINUS_33: Final = bytes((b - DATA_OFFSET) & 0xFF for b in range(256))


@dataclass(frozen=True, slots=True)
class Frame:
    """One DL/T 645 frame: printed address, control byte, data already reduced by 0x33."""

    address: str
    control: int
    data: bytes = b""

    @property
    def function(self) -> int:
        return self.control & FUNCTION_MASK

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY)

    @property
    def is_error(self) -> bool:
        return bool(self.control & ERROR)

    @property
    def more_follows(self) -> bool:
        return bool(self.control & MORE_FOLLOWS)


def reply_control(function: int, *, error: bool = False, more: bool = False) -> int:
    """Control byte of a reply to `function`: 91 normal, B1 more follows, D1 error."""
    return REPLY | function | (ERROR if error else 0) | (MORE_FOLLOWS if more else 0)


def error_reasons(code: int) -> tuple[str, ...]:
    """Names of the bits set in an error reply's error byte (bit0 → "other", …)."""
    return tuple(name for bit, name in ERROR_REASONS if code & bit)


def error_code(*reasons: str) -> int:
    """The error byte carrying `reasons` (inverse of `error_reasons`)."""
    bits = dict((name, bit) for bit, name in ERROR_REASONS)
    try:
        return sum(bits[name] for name in set(reasons))
    except KeyError as exc:
        raise DriverUsageError(f"unknown error reason {exc.args[0]!r}") from None


# --- addresses ---------------------------------------------------------------------------------


# Addresses checked and converted once: a driver sees the same few hundred meters every round,
# and every frame it builds would otherwise redo the string work (bounded against misuse).
_NORMALIZED: dict[str, str] = {}
_TO_WIRE: dict[str, bytes] = {}
_ADDRESS_MEMO_LIMIT: Final = 4096


def normalize_address(address: str) -> str:
    """The 12-character printed form: zero-padded, upper case; AA pairs allowed (wildcards).

    Each byte of the address is either two BCD digits or AA ("any"), e.g. `AAAAAAAAAAAA` or
    `AAAA56789012` (addressing by the low digits only).
    """
    known = _NORMALIZED.get(address)
    if known is not None:
        return known
    text = _normalized(address)
    if len(_NORMALIZED) < _ADDRESS_MEMO_LIMIT:
        _NORMALIZED[address] = text
    return text


def _normalized(address: str) -> str:
    text = address.strip().upper()
    if not text or len(text) > 12:
        raise DriverUsageError(f"DL/T 645 address must have 1..12 digits, got {address!r}")
    text = text.rjust(12, "0")
    for i in range(0, 12, 2):
        pair = text[i : i + 2]
        if not (pair.isdigit() or pair == "AA"):
            raise DriverUsageError(f"DL/T 645 address {address!r}: {pair!r} is not BCD or AA")
    return text


def address_to_wire(address: str) -> bytes:
    """Six address bytes, lowest first: `123456789012` → `12 90 78 56 34 12`."""
    wire = _TO_WIRE.get(address)
    if wire is None:
        wire = bytes.fromhex(normalize_address(address))[::-1]
        if len(_TO_WIRE) < _ADDRESS_MEMO_LIMIT:
            _TO_WIRE[address] = wire
    return wire


_ADDRESS_CACHE: dict[bytes, str] = {}


def address_from_wire(raw: bytes) -> str:
    """Printed form of six wire bytes. Never fails: garbage addresses come out as hex."""
    cached = _ADDRESS_CACHE.get(raw)
    if cached is None:
        cached = raw[::-1].hex().upper()
        # A bus has at most a few hundred meters; bound the cache against noise anyway.
        if len(_ADDRESS_CACHE) < 4096:
            _ADDRESS_CACHE[raw] = cached
    return cached


def address_matches(pattern: str, address: str) -> bool:
    """True if `address` (from a reply) is the meter `pattern` names; AA pairs match any byte."""
    return pattern == address or all(
        pattern[i : i + 2] in ("AA", address[i : i + 2]) for i in range(0, len(pattern), 2)
    )


# --- BCD and time fields -----------------------------------------------------------------------


def bcd_to_int(raw: bytes) -> int:
    """Unsigned BCD, lowest byte first (as on the wire). Raises FrameError on a non-BCD nibble."""
    digits = raw[::-1].hex()
    if not digits.isdigit():
        raise FrameError(f"not BCD: {raw.hex(' ')}")
    return int(digits)


def int_to_bcd(value: int, length: int) -> bytes:
    """`value` as `length` BCD bytes, lowest first. Raises DriverUsageError if it does not fit."""
    if not 0 <= value < 10 ** (2 * length):
        raise DriverUsageError(f"{value} does not fit in {length} BCD bytes")
    return bytes.fromhex(f"{value:0{2 * length}d}")[::-1]


def _bcd_byte(value: int) -> int:
    return (value // 10) << 4 | value % 10


def encode_datetime(when: dt.datetime) -> bytes:
    """`ss mm hh DD MM YY` (broadcast time, relay valid-until): six BCD bytes, seconds first."""
    if not 2000 <= when.year <= 2099:
        raise DriverUsageError(f"DL/T 645 years are 2000..2099, got {when.year}")
    fields = (when.second, when.minute, when.hour, when.day, when.month, when.year - 2000)
    return bytes(_bcd_byte(v) for v in fields)


def decode_datetime(raw: bytes) -> dt.datetime:
    """Inverse of `encode_datetime`; raises FrameError on non-BCD bytes or an impossible date."""
    if len(raw) != 6:
        raise FrameError(f"date-time needs 6 bytes, got {len(raw)}")
    ss, mm, hh, day, month, yy = (bcd_to_int(raw[i : i + 1]) for i in range(6))
    try:
        return dt.datetime(2000 + yy, month, day, hh, mm, ss)
    except ValueError as exc:
        raise FrameError(f"impossible date-time {raw.hex(' ')}") from exc


# --- frames ------------------------------------------------------------------------------------


def add_offset(data: bytes) -> bytes:
    """Data as sent: every byte +0x33."""
    return data.translate(_PLUS_33)


def remove_offset(data: bytes) -> bytes:
    """Data as meant: every byte -0x33."""
    return data.translate(_MINUS_33)


def encode_frame(frame: Frame, preamble: int = DEFAULT_PREAMBLE) -> bytes:
    """Wire bytes of `frame`, with `preamble` FE wake-up bytes (0..4)."""
    if not 0 <= preamble <= 4:
        raise DriverUsageError(f"preamble must be 0..4 FE bytes, got {preamble}")
    if not 0 <= frame.control <= 0xFF:
        raise DriverUsageError(f"control byte out of range: {frame.control}")
    if len(frame.data) > MAX_DATA_LENGTH:
        raise DriverUsageError(f"data of {len(frame.data)} bytes exceeds L <= {MAX_DATA_LENGTH}")
    body = (
        bytes((START,))
        + address_to_wire(frame.address)
        + bytes((START, frame.control, len(frame.data)))
        + frame.data.translate(_PLUS_33)
    )
    return bytes((WAKE_UP,)) * preamble + body + bytes((sum(body) & 0xFF, END))


def decode_frame(data: bytes) -> Frame:
    """Exactly one frame (FE preamble allowed, nothing else); raises FrameError/ChecksumError.

    The strict counterpart of `Decoder`, for callers holding one complete frame (a file from
    an IR handheld, a test vector).
    """
    start = 0
    while start < len(data) and data[start] == WAKE_UP:
        start += 1
    raw = data[start:]
    if len(raw) < OVERHEAD:
        raise FrameError(f"{len(raw)} bytes is shorter than the smallest frame")
    if raw[0] != START or raw[7] != START:
        raise FrameError("no 68 .. 68 frame header")
    length = raw[9]
    if len(raw) != OVERHEAD + length:
        raise FrameError(f"L={length} but {len(raw) - OVERHEAD} data bytes")
    if sum(raw[:-2]) & 0xFF != raw[-2]:
        raise ChecksumError(f"checksum {raw[-2]:02X}, computed {sum(raw[:-2]) & 0xFF:02X}")
    if raw[-1] != END:
        raise FrameError(f"frame ends with {raw[-1]:02X}, not 16")
    return Frame(address_from_wire(bytes(raw[1:7])), raw[8], bytes(raw[10:-2]).translate(_MINUS_33))


class Decoder:
    """Stream decoder: `feed` any bytes, then call `next_frame` until it returns None.

    Never raises on what the line delivers. Bytes that cannot start a frame are dropped and
    counted in `skipped_bytes` (FE wake-up bytes are expected and not counted); a candidate
    frame with a bad checksum or end marker is counted (`checksum_errors`, `frame_errors`),
    kept as `last_error`, and the hunt resumes one byte after its 68: its "header" may have
    been noise that happened to contain 68, and the real frame may start inside it. For the
    same reason a candidate still waiting for bytes is abandoned (counted in `frame_errors`) as
    soon as a complete valid frame has arrived after its 68.
    """

    __slots__ = (
        "_data",
        "_position",
        "checksum_errors",
        "frame_errors",
        "last_error",
        "skipped_bytes",
    )

    def __init__(self) -> None:
        # Immutable bytes and a read position: a frame is sliced out with one copy.
        self._data = b""
        self._position = 0
        self.skipped_bytes = 0
        self.checksum_errors = 0
        self.frame_errors = 0
        self.last_error: FrameError | None = None

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._data) - self._position

    def feed(self, data: bytes) -> None:
        self._data = self._data[self._position :] + data
        self._position = 0

    def next_frame(self) -> Frame | None:
        """The next complete, valid frame, or None until more bytes arrive."""
        data, position = self._data, self._position
        while True:
            start = data.find(START, position)
            if start != position:  # preamble or noise before a 68, or no 68 at all (-1)
                stop = len(data) if start < 0 else start
                self.skipped_bytes += stop - position - data.count(WAKE_UP, position, stop)
                position = stop
                if start < 0:
                    self._data, self._position = b"", 0
                    return None
            if len(data) - position < HEADER_LENGTH:
                break
            length = data[position + 9]
            if data[position + 7] != START or length > MAX_DATA_LENGTH:
                self.skipped_bytes += 1
                position += 1
                continue
            end = position + OVERHEAD + length
            if len(data) < end:
                if not _valid_frame_after(data, position + 1):
                    break
                # A noise 68 whose "L" reaches past a whole valid frame that already arrived:
                # give up on it rather than wait for bytes that may never come.
                self.frame_errors += 1
                self.last_error = FrameError("incomplete frame abandoned for a later one")
                self.skipped_bytes += 1
                position += 1
                continue
            raw = data[position:end]
            checksum = raw[-2]
            # One pass over the frame: CS is the sum of everything before it.
            if (sum(raw) - checksum - raw[-1]) & 0xFF != checksum:
                self.checksum_errors += 1
                self.last_error = ChecksumError("bad checksum, frame skipped")
            elif raw[-1] != END:
                self.frame_errors += 1
                self.last_error = FrameError(f"end marker {raw[-1]:02X}, frame skipped")
            else:
                self._position = end
                address = _ADDRESS_CACHE.get(raw[1:7]) or address_from_wire(raw[1:7])
                return Frame(address, raw[8], raw[HEADER_LENGTH:-2].translate(_MINUS_33))
            self.skipped_bytes += 1
            position += 1
        self._position = position
        return None

    def frames(self) -> list[Frame]:
        """Every complete frame available now."""
        out = []
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out


def _valid_frame_after(data: bytes, position: int) -> bool:
    """Whether a complete frame with a good checksum and end starts at or after `position`."""
    while (position := data.find(START, position)) >= 0:
        end = position + OVERHEAD + (data[position + 9] if len(data) > position + 9 else 0)
        if (
            end <= len(data)
            and data[position + 7] == START
            and end - position - OVERHEAD <= MAX_DATA_LENGTH
            and sum(data[position : end - 2]) & 0xFF == data[end - 2]
            and data[end - 1] == END
        ):
            return True
        position += 1
    return False
