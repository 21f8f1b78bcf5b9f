"""The infrared handheld's export: final registers read from dead meters, parsed exactly.

A handheld reads a meter through its optical port (DL/T 645 at 1200 baud, combined active
energy `XXXXXX.XX` kWh) and exports CSV, UTF-8, one reading per line:

    # voltbook IR export v1            ← optional comment lines start with '#'
    address,read_at,energy_kwh         ← the header, exactly
    000000000001,2026-11-24T09:30:00+08:00,1234.56

- `address`: the meter address, 1-32 of 0-9 A-Z a-z (DL/T 645: the 12 digits on the plate);
- `read_at`: ISO 8601 with an offset (a handheld clock without a zone is refused);
- `energy_kwh`: the register, exactly two decimals (0.01 kWh = 10 Wh), 0 … 99 999 999.99.

kWh becomes integer Wh by the digits, never through a float: `1234.56` → 1 234 560 Wh. Any bad
line refuses the whole file (`HandheldError` with the line number). Pure: no I/O, no clock;
`voltbook-fw ir-import` and the cloud's `/meter-swaps/ir-import` share it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

HEADER = ("address", "read_at", "energy_kwh")
ADDRESS = re.compile(r"[0-9A-Za-z]{1,32}")
KWH = re.compile(r"(\d{1,8})\.(\d{2})")
MAX_ROWS = 10_000


class HandheldError(ValueError):
    """A handheld file that is not the documented format; `line` is 1-based (0: the file)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


@dataclass(frozen=True, slots=True)
class IrRegister:
    address: str
    read_at: dt.datetime
    energy_wh: int

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "read_at": self.read_at.isoformat(),
            "energy_wh": self.energy_wh,
        }


def kwh_to_wh(text: str) -> int:
    """`"1234.56"` → 1234560: exact, two decimals required."""
    match = KWH.fullmatch(text)
    if match is None:
        raise ValueError(f"energy {text!r} must be kWh with exactly two decimals, e.g. 1234.56")
    return int(match[1]) * 1000 + int(match[2]) * 10


def _row(number: int, line: str) -> IrRegister:
    cells = [cell.strip() for cell in line.split(",")]
    if len(cells) != len(HEADER):
        raise HandheldError(number, f"{len(cells)} fields, expected {len(HEADER)}")
    address, when, energy = cells
    if not ADDRESS.fullmatch(address):
        raise HandheldError(number, f"meter address {address!r} is not 1-32 letters/digits")
    try:
        read_at = dt.datetime.fromisoformat(when)
    except ValueError:
        raise HandheldError(number, f"read_at {when!r} is not ISO 8601") from None
    if read_at.tzinfo is None or read_at.utcoffset() is None:
        raise HandheldError(number, f"read_at {when!r} has no offset (e.g. +08:00)")
    try:
        wh = kwh_to_wh(energy)
    except ValueError as exc:
        raise HandheldError(number, str(exc)) from None
    return IrRegister(address, read_at, wh)


def parse(text: str) -> list[IrRegister]:
    """The readings of a handheld export, in file order; HandheldError on the first bad line."""
    if not isinstance(text, str):
        raise HandheldError(0, "the export must be text")
    if "\x00" in text:
        raise HandheldError(0, "the export contains NUL bytes: not a text file")
    readings: list[IrRegister] = []
    seen: dict[tuple[str, dt.datetime], int] = {}
    header = False
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not header:
            if tuple(cell.strip() for cell in line.split(",")) != HEADER:
                raise HandheldError(number, f"the header must be {','.join(HEADER)}")
            header = True
            continue
        reading = _row(number, line)
        key = (reading.address, reading.read_at)
        first = seen.setdefault(key, reading.energy_wh)
        if first != reading.energy_wh:
            raise HandheldError(number, f"meter {reading.address} read twice at one time, "
                                        "with different registers")  # fmt: skip
        if len(seen) == len(readings):
            continue  # the same reading exported twice
        readings.append(reading)
        if len(readings) > MAX_ROWS:
            raise HandheldError(number, f"more than {MAX_ROWS} readings in one file")
    if not header:
        raise HandheldError(0, f"no header line {','.join(HEADER)}")
    if not readings:
        raise HandheldError(0, "no readings in the file")
    return readings
