"""Values the store takes and gives back, and their compact row and uplink forms.

A reading is kept as one compact row, a `ledger.readings.ReadingRow`: the fields read every
cycle in their own columns, the rare ones (quantisation bound, reactive power, frequency, water
volume, valve, flags, counters, meter clock) in a small JSON object `extra` only when present.
`extra` is an object in the row; `table_row` turns it into JSON text for the SQLite column (the
one place it is text on the concentrator). A cycle's readings go up as one outbox item that
names the columns once, so a GPRS batch stays small:

    {"columns": ["meter", "time", "energy_wh", "tariff_wh", "voltage", "current", "power", "pf",
                 "relay", "status", "extra"],
     "rows": [["000000000001", 1793491200000, 123450, "10,20,30,123390", 229.5, 1.25, 286.9,
               0.98, 1, null, null], ...]}

(`columns` is `ledger.readings.READING_FIELDS`; `tariff_wh` and `status` are comma-separated
integers, `relay` 1 closed / 0 open, `extra` an object or null.)

Times are timezone-aware datetimes at the API and integer milliseconds since the Unix epoch
(UTC) in rows; what comes back is in UTC (the caller converts to the site's zone).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from edge.drivers.reading import Reading, RelayState, ValveState
from edge.store.errors import StoreUsageError
from ledger.book import Outcome
from ledger.readings import READING_FIELDS, ReadingRow
from ledger.units import Wh

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)

# A `ReadingRow` as the SQLite `readings` table holds it: `extra` as JSON text.
TableRow = tuple[
    str, int, int | None, str | None, float | None, float | None, float | None, float | None,
    int | None, str | None, str | None,
]  # fmt: skip


def to_ms(time: dt.datetime) -> int:
    """Milliseconds since the epoch; refuses a naive datetime (whose zone nobody knows)."""
    if time.tzinfo is None or time.utcoffset() is None:
        raise StoreUsageError(f"time {time.isoformat()} has no zone; pass an aware datetime")
    return (time - EPOCH) // _MS


def from_ms(ms: int) -> dt.datetime:
    return EPOCH + ms * _MS


_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def compact_json(value: object) -> str:
    """JSON without spaces; refuses NaN and anything JSON cannot hold, as a caller error."""
    try:
        return _compact(value)
    except (TypeError, ValueError) as exc:
        raise StoreUsageError(f"cannot store {value!r} as JSON: {exc}") from exc


@dataclass(frozen=True, slots=True)
class TimedReading:
    """A reading and the (wall) time the concentrator took it."""

    time: dt.datetime
    reading: Reading


class Category(StrEnum):
    EVENT = "event"
    ALARM = "alarm"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened (relay tripped, meter replaced) or an alarm to raise."""

    time: dt.datetime
    kind: str
    category: Category = Category.EVENT
    meter: str | None = None
    shop: str | None = None
    account: str | None = None
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    event: Event


class OutboxKind(StrEnum):
    ENTRY = "entry"
    CHECKPOINT = "checkpoint"
    READING = "reading"
    EVENT = "event"
    ALARM = "alarm"
    COMMAND_RESULT = "command_result"


class CommandStatus(StrEnum):
    APPLIED = "applied"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What applying a cloud command did. A repeated delivery gets the stored result back with
    `first_delivery=False` and changes nothing."""

    command_id: str
    status: CommandStatus
    seqs: tuple[int, ...]  # chain entries the command created
    outcomes: tuple[Outcome, ...]  # one per transfer of the command, as the book judged it
    first_delivery: bool = True
    reason: str = ""  # why a command was refused before its transfers reached the book

    def to_json(self) -> str:
        fields: dict[str, object] = {
            "command": self.command_id,
            "status": self.status.value,
            "seqs": list(self.seqs),
            "outcomes": [o.value for o in self.outcomes],
        }
        if self.reason:
            fields["reason"] = self.reason
        return compact_json(fields)

    @classmethod
    def from_json(cls, text: str, *, first_delivery: bool) -> CommandResult:
        fields = json.loads(text)
        return cls(
            command_id=fields["command"],
            status=CommandStatus(fields["status"]),
            seqs=tuple(fields["seqs"]),
            outcomes=tuple(Outcome(o) for o in fields["outcomes"]),
            first_delivery=first_delivery,
            reason=str(fields.get("reason", "")),
        )


# -- readings ----------------------------------------------------------------------------------


def _extra(r: Reading) -> dict[str, object] | None:
    extra: dict[str, object] = {}
    if r.energy_error_wh:
        extra["err"] = r.energy_error_wh
    if r.reactive_var is not None:
        extra["var"] = r.reactive_var
    if r.frequency_hz is not None:
        extra["hz"] = r.frequency_hz
    if r.volume_l is not None:
        extra["vol"] = r.volume_l
    if r.valve is not None:
        extra["valve"] = r.valve.value
    if r.event_flags:
        extra["flags"] = sorted(r.event_flags)
    if r.counters:
        extra["counters"] = [list(c) for c in r.counters]
    if r.meter_time is not None:
        extra["mt"] = r.meter_time.isoformat()
    return extra or None


def reading_row(item: TimedReading) -> ReadingRow:
    r = item.reading
    relay = None if r.relay is None else int(r.relay is RelayState.CLOSED)
    return ReadingRow(
        r.address,
        to_ms(item.time),
        r.energy_wh,
        ",".join(map(str, r.energy_by_tariff_wh)) if r.energy_by_tariff_wh else None,
        r.voltage_v,
        r.current_a,
        r.power_w,
        r.power_factor,
        relay,
        ",".join(map(str, r.status_words)) if r.status_words else None,
        _extra(r),
    )


def table_row(row: ReadingRow) -> TableRow:
    """The row for the SQLite `readings` table (`extra` as compact JSON text); refuses NaN and
    anything JSON cannot hold, as a caller error."""
    if row.extra is None:
        return row
    return (*row[:-1], compact_json(row.extra))


def _ints(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",")) if text else ()


def reading_from_row(stored: TableRow) -> TimedReading:
    """A reading back from its SQLite `readings` row."""
    row = ReadingRow._make(stored)
    extra: dict[str, Any] = json.loads(row.extra) if row.extra else {}
    meter_time = extra.get("mt")
    reading = Reading(
        address=row.meter,
        energy_wh=None if row.energy_wh is None else Wh(row.energy_wh),
        energy_by_tariff_wh=tuple(Wh(x) for x in _ints(row.tariff_wh)),
        energy_error_wh=extra.get("err", 0),
        voltage_v=row.voltage,
        current_a=row.current,
        power_w=row.power,
        reactive_var=extra.get("var"),
        power_factor=row.pf,
        frequency_hz=extra.get("hz"),
        relay=None if row.relay is None else RelayState.CLOSED if row.relay else RelayState.OPEN,
        volume_l=extra.get("vol"),
        valve=None if extra.get("valve") is None else ValveState(extra["valve"]),
        status_words=_ints(row.status),
        event_flags=frozenset(extra.get("flags", ())),
        counters=tuple((str(name), int(n)) for name, n in extra.get("counters", ())),
        meter_time=None if meter_time is None else dt.datetime.fromisoformat(meter_time),
    )
    return TimedReading(from_ms(row.time), reading)


def readings_payload(rows: Sequence[ReadingRow]) -> bytes:
    """The outbox form of a cycle's reading rows: the column names once, then one array per
    reading, `extra` as its object (JSON's C encoder does the work: this runs for every reading
    stored)."""
    return compact_json({"columns": READING_FIELDS, "rows": rows}).encode()


def reading_rows(payload: bytes) -> tuple[ReadingRow, ...]:
    """The rows of a `readings_payload` (raises ValueError, KeyError or TypeError if it is
    not one)."""
    stored = json.loads(payload)
    if tuple(stored["columns"]) != READING_FIELDS:
        raise ValueError(f"reading columns {stored['columns']} are not {list(READING_FIELDS)}")
    return tuple(map(ReadingRow._make, stored["rows"]))


# -- events ------------------------------------------------------------------------------------

EventRow = tuple[int, str, str, str | None, str | None, str | None, str]


def event_row(event: Event) -> EventRow:
    return (
        to_ms(event.time),
        Category(event.category).value,
        event.kind,
        event.meter,
        event.shop,
        event.account,
        compact_json(dict(event.detail)),
    )


def event_payload(event_id: int, row: EventRow) -> bytes:
    ms, category, kind, meter, shop, account, detail = row
    item: dict[str, object] = {"id": event_id, "t": ms, "c": category, "k": kind}
    for key, value in (("m", meter), ("shop", shop), ("a", account)):
        if value is not None:
            item[key] = value
    item["d"] = json.loads(detail)
    return compact_json(item).encode()


def event_from_row(event_id: int, row: EventRow) -> StoredEvent:
    ms, category, kind, meter, shop, account, detail = row
    return StoredEvent(
        event_id,
        Event(from_ms(ms), kind, Category(category), meter, shop, account, json.loads(detail)),
    )
