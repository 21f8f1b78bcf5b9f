"""DL/T 645 requests: one encoder per function, for both versions, from a table of codes.

The two versions differ in function codes and DI width, not in framing, so each is a row
(`Dialect`) and every encoder takes one. Encoders return `Frame`s; `encode_frame` makes bytes.
The relay command (1C) is built in plaintext; meters with a security chip (ESAM) want an
encrypted payload and password level 0x96/0x98, which a `RelayCipher` supplies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from edge.drivers.dlt645 import (
    BROADCAST,
    WILDCARD,
    Frame,
    decode_datetime,
    encode_datetime,
    int_to_bcd,
    normalize_address,
)
from edge.drivers.errors import DriverUsageError, FrameError


@dataclass(frozen=True, slots=True)
class Dialect:
    """Function codes and DI width of one version of the standard; None: no such function."""

    version: int
    di_length: int
    read: int
    read_follow_up: int
    write: int
    broadcast_time: int
    change_baud: int
    read_address: int | None
    freeze: int | None
    relay: int | None
    follow_up_sequence: bool  # 2007 numbers follow-up frames; 1997 does not


DLT645_2007_CODES: Final = Dialect(
    version=2007,
    di_length=4,
    read=0x11,
    read_follow_up=0x12,
    write=0x14,
    broadcast_time=0x08,
    change_baud=0x17,
    read_address=0x13,
    freeze=0x16,
    relay=0x1C,
    follow_up_sequence=True,
)
DLT645_1997_CODES: Final = Dialect(
    version=1997,
    di_length=2,
    read=0x01,
    read_follow_up=0x02,
    write=0x04,
    broadcast_time=0x08,
    change_baud=0x0C,
    read_address=None,
    freeze=None,
    relay=None,
    follow_up_sequence=False,
)
DIALECTS: Final = {2007: DLT645_2007_CODES, 1997: DLT645_1997_CODES}

# Change-baud feature byte (17 / 0C).
BAUD_FEATURES: Final = {600: 0x02, 1200: 0x04, 2400: 0x08, 4800: 0x10, 9600: 0x20, 19200: 0x40}

# Relay control N1 codes (1C).
RelayAction = Literal[
    "trip",
    "close_allowed",  # the customer closes by holding the button for 3 s
    "close_direct",  # grid prepaid extension: the meter closes at once
    "alarm_on",
    "alarm_off",
    "keep_power_on",
    "keep_power_off",
]
RELAY_ACTIONS: Final[dict[RelayAction, int]] = {
    "trip": 0x1A,
    "close_allowed": 0x1B,
    "close_direct": 0x1C,
    "alarm_on": 0x2A,
    "alarm_off": 0x2B,
    "keep_power_on": 0x3A,
    "keep_power_off": 0x3B,
}
RELAY_CODES_TO_ACTIONS: Final = {code: action for action, code in RELAY_ACTIONS.items()}
PLAINTEXT_LEVEL: Final = 0x02


class RelayCipher(Protocol):
    """Seals the eight command bytes N1..N8 for a meter with a security chip."""

    @property
    def password_level(self) -> int: ...

    def seal(self, address: str, command: bytes) -> bytes: ...


def di_bytes(di: int, dialect: Dialect = DLT645_2007_CODES) -> bytes:
    """A DI as sent: DI0 first (`0x00010000` → `00 00 01 00`; 1997 `0x9010` → `10 90`)."""
    if not 0 <= di < 1 << (8 * dialect.di_length):
        raise DriverUsageError(f"DI {di:X} does not fit DL/T 645-{dialect.version}")
    return di.to_bytes(dialect.di_length, "little")


def _require(code: int | None, what: str, dialect: Dialect) -> int:
    if code is None:
        raise DriverUsageError(f"DL/T 645-{dialect.version} has no {what} function")
    return code


def read_request(address: str, di: int, dialect: Dialect = DLT645_2007_CODES) -> Frame:
    """Read data (11; 1997: 01)."""
    return Frame(normalize_address(address), dialect.read, di_bytes(di, dialect))


def follow_up_request(
    address: str, di: int, sequence: int, dialect: Dialect = DLT645_2007_CODES
) -> Frame:
    """Read the next frame of a multi-frame reply (12 with sequence 1, 2, …; 1997: 02)."""
    data = di_bytes(di, dialect)
    if dialect.follow_up_sequence:
        if not 0 <= sequence <= 0xFF:
            raise DriverUsageError(f"follow-up sequence must be 0..255, got {sequence}")
        data += bytes((sequence,))
    return Frame(normalize_address(address), dialect.read_follow_up, data)


def read_address_request(dialect: Dialect = DLT645_2007_CODES) -> Frame:
    """Ask whoever is on the bus for its address (13 to AA…AA, L=0)."""
    return Frame(WILDCARD, _require(dialect.read_address, "read-address", dialect))


def credentials(password_level: int, password: int, operator: int) -> bytes:
    """`PA P0 P1 P2 C0 C1 C2 C3`: level, 3-byte password and operator code, low byte first."""
    if not (0 <= password_level <= 0xFF and 0 <= password < 1 << 24 and 0 <= operator < 1 << 32):
        raise DriverUsageError("password level, password or operator code out of range")
    return (
        bytes((password_level,)) + password.to_bytes(3, "little") + operator.to_bytes(4, "little")
    )


def write_request(
    address: str,
    di: int,
    payload: bytes,
    *,
    password_level: int = PLAINTEXT_LEVEL,
    password: int = 0,
    operator: int = 0,
    dialect: Dialect = DLT645_2007_CODES,
) -> Frame:
    """Write data (14): DI, credentials, data. 1997 (04) has no operator code."""
    auth = credentials(password_level, password, operator)
    if dialect.version == 1997:
        auth = auth[:4]
    return Frame(normalize_address(address), dialect.write, di_bytes(di, dialect) + auth + payload)


def broadcast_time_request(when: dt.datetime, dialect: Dialect = DLT645_2007_CODES) -> Frame:
    """Set every meter's clock (08 to 99…99, `ss mm hh DD MM YY`); meters do not reply."""
    return Frame(BROADCAST, dialect.broadcast_time, encode_datetime(when))


def freeze_request(
    address: str,
    *,
    minute: int | None = None,
    hour: int | None = None,
    day: int | None = None,
    month: int | None = None,
    dialect: Dialect = DLT645_2007_CODES,
) -> Frame:
    """Freeze (16): `mm hh DD MM`, a None field is 99 (every); all None freezes at once."""
    fields = (minute, hour, day, month)
    data = b"".join(b"\x99" if v is None else int_to_bcd(v, 1) for v in fields)
    return Frame(normalize_address(address), _require(dialect.freeze, "freeze", dialect), data)


def change_baud_request(address: str, baudrate: int, dialect: Dialect = DLT645_2007_CODES) -> Frame:
    """Change the meter's baud rate (17; 1997: 0C) with its one-byte feature code."""
    try:
        feature = BAUD_FEATURES[baudrate]
    except KeyError:
        raise DriverUsageError(f"DL/T 645 cannot switch to {baudrate} baud") from None
    return Frame(normalize_address(address), dialect.change_baud, bytes((feature,)))


def relay_request(
    address: str,
    action: RelayAction,
    *,
    valid_until: dt.datetime,
    password_level: int = PLAINTEXT_LEVEL,
    password: int = 0,
    operator: int = 0,
    cipher: RelayCipher | None = None,
) -> Frame:
    """Relay control (1C): `PA P0..P2 C0..C3 N1 N2 N3..N8`, N1 the action, N3..N8 valid-until."""
    try:
        code = RELAY_ACTIONS[action]
    except KeyError:
        raise DriverUsageError(f"unknown relay action {action!r}") from None
    address = normalize_address(address)
    command = bytes((code, 0x00)) + encode_datetime(valid_until)
    if cipher is not None:
        password_level, command = cipher.password_level, cipher.seal(address, command)
    return Frame(address, 0x1C, credentials(password_level, password, operator) + command)


@dataclass(frozen=True, slots=True)
class RelayCommand:
    """A plaintext 1C payload, as a meter sees it."""

    password_level: int
    password: int
    operator: int
    code: int
    valid_until: dt.datetime

    @property
    def action(self) -> RelayAction | None:
        return RELAY_CODES_TO_ACTIONS.get(self.code)


def parse_relay_command(data: bytes) -> RelayCommand:
    """Inverse of `relay_request` without a cipher; raises FrameError on another layout."""
    if len(data) != 16:
        raise FrameError(f"plaintext relay command has 16 bytes, got {len(data)}")
    return RelayCommand(
        password_level=data[0],
        password=int.from_bytes(data[1:4], "little"),
        operator=int.from_bytes(data[4:8], "little"),
        code=data[8],
        valid_until=decode_datetime(data[10:16]),
    )
