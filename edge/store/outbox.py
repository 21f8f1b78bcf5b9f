"""What the outbox hands the uplink: one typed, frozen item per outbox row, in commit order.

    outbox row: kind, ref, payload                  item (`Store.outbox`)
    entry       seq, no payload (the ledger row) →  EntryItem: seq, prev_hash, hash, body, linked
    checkpoint  seq, its `ledger.export` line    →  CheckpointItem: seq (the uplink skips it)
    reading     a cycle's rows (`records`)       →  ReadingsItem: `ReadingRow`s, `extra` an object
    event/alarm {"id", "t", "c", "k", …}         →  EventItem: that object (the uplink form)
    command_result  `CommandResult.to_json`      →  ResultItem: that object

An entry is stored once, in the ledger table: its outbox row only points at its seq, and its
item carries the canonical body and hashes exactly as stored, so the uplink puts the bytes in a
batch as they are (never decoded and encoded again). The store checks that the body still
hashes to the stored hash (the boot scan verified the whole chain; this finds a row changed
since, before the edge signs a head the cloud could not verify) and reads `linked`, in place
from a version-2 body (`ledger.encoding_v2.LINKED_AT`) and with SQLite's JSON functions from
a version-1 one: the uplink must not end a batch inside a linked chain.

`size` is an item's raw bytes as the uplink's fetch limits and first guesses count them: the
stored payload's length; for a version-1 entry the length of its `ledger.export` line (its body
with seq, node and both hashes), which is what those ratios were measured on; for a version-2
entry 8 bytes per body byte: carried in base64, such a body compresses about 3×, a reading
payload about 24×, so weighing it as 8 keeps the ratio a batch learns the same whatever its
mix of entries and readings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edge.store.errors import CorruptStore
from edge.store.records import OutboxKind, reading_rows
from ledger.chain import entry_hash
from ledger.encoding_v2 import FORMAT_V2, LINKED_AT
from ledger.readings import ReadingRow

_HEX_HASH = 64  # characters of a hash in an export line
_V2_WEIGHT = 8  # raw bytes a version-2 body byte counts for (see `size` above)


@dataclass(frozen=True, slots=True)
class EntryItem:
    """A ledger entry, as the ledger table holds it."""

    kind: ClassVar[OutboxKind] = OutboxKind.ENTRY
    id: int
    created: str
    size: int
    seq: int
    prev_hash: bytes
    hash: bytes
    body: bytes  # the canonical transfer (`ledger.encoding`), the bytes that were hashed
    linked: bool  # the transfer continues a linked chain: a batch must not end here


@dataclass(frozen=True, slots=True)
class CheckpointItem:
    kind: ClassVar[OutboxKind] = OutboxKind.CHECKPOINT
    id: int
    created: str
    size: int
    seq: int


@dataclass(frozen=True, slots=True)
class ReadingsItem:
    """A cycle's readings."""

    kind: ClassVar[OutboxKind] = OutboxKind.READING
    id: int
    created: str
    size: int
    rows: tuple[ReadingRow, ...]


@dataclass(frozen=True, slots=True)
class EventItem:
    """An event or an alarm, in its uplink form (`records.event_payload`)."""

    kind: OutboxKind  # EVENT or ALARM
    id: int
    created: str
    size: int
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ResultItem:
    """A command's result, as stored (`records.CommandResult.to_json`)."""

    kind: ClassVar[OutboxKind] = OutboxKind.COMMAND_RESULT
    id: int
    created: str
    size: int
    fields: Mapping[str, Any]


OutboxItem = EntryItem | CheckpointItem | ReadingsItem | EventItem | ResultItem

# The outbox row with its ledger row (entries only): what `outbox_item` reads. `linked` is
# SQLite's reading of the body's "linked" member (1, 0, or NULL when the body is not JSON).
OUTBOX_SELECT = """SELECT o.id, o.kind, o.ref, o.payload, o.created,
       l.prev_hash, l.hash, l.body,
       CASE WHEN json_valid(CAST(l.body AS TEXT))
            THEN json_extract(CAST(l.body AS TEXT), '$.linked') END
FROM outbox o LEFT JOIN ledger l ON o.kind = 'entry' AND l.seq = o.ref"""


class OutboxReader:
    """Turns outbox rows (`OUTBOX_SELECT`) of one store into items."""

    def __init__(self, path: Path, node: str) -> None:
        self._path = path
        self._node = node
        # An entry's export line is its body's members plus these five, each after a comma
        # (`ledger.export.entry_line`: sorted keys, compact, raw UTF-8); the seq's digits vary.
        members = (
            f'"hash":"{"0" * _HEX_HASH}"',
            f'"node":{json.dumps(node, ensure_ascii=False)}',
            f'"prev_hash":"{"0" * _HEX_HASH}"',
            '"seq":',
            '"type":"entry"',
        )
        self._entry_line_extra = sum(len(m.encode()) + 1 for m in members)

    def item(self, row: tuple[Any, ...]) -> OutboxItem:
        item_id, kind_text, ref, payload, created, *ledger_row = row
        try:
            kind = OutboxKind(kind_text)
            if kind is OutboxKind.ENTRY:
                return self._entry(item_id, created, ref, ledger_row)
            size = len(payload)
            if kind is OutboxKind.READING:
                return ReadingsItem(item_id, created, size, reading_rows(payload))
            if kind is OutboxKind.CHECKPOINT:
                return CheckpointItem(item_id, created, size, int(ref))
            fields = json.loads(payload)
            if not isinstance(fields, dict):
                raise TypeError("not a JSON object")
            if kind is OutboxKind.COMMAND_RESULT:
                if not isinstance(fields.get("command"), str):
                    raise ValueError("a command result without its command id")
                return ResultItem(item_id, created, size, fields)
            return EventItem(kind, item_id, created, size, fields)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise CorruptStore(
                self._path, None, f"outbox item {item_id} is malformed: {exc}"
            ) from exc

    def _entry(self, item_id: int, created: str, seq: int, ledger_row: list[Any]) -> EntryItem:
        prev_hash, digest, body, linked = ledger_row
        if prev_hash is None or digest is None or body is None:
            raise CorruptStore(self._path, None, f"outbox item {item_id} has no entry")
        prev_hash, digest, body = bytes(prev_hash), bytes(digest), bytes(body)
        if entry_hash(self._node, seq, prev_hash, body) != digest:
            raise CorruptStore(self._path, seq, "the entry's body does not hash to its hash")
        if len(body) > LINKED_AT and body[0] == FORMAT_V2:
            linked, size = body[LINKED_AT], _V2_WEIGHT * len(body)
        else:
            size = len(body) + self._entry_line_extra + len(str(seq))
        if linked not in (0, 1):
            raise CorruptStore(self._path, seq, "the entry's body has no linked flag")
        return EntryItem(item_id, created, size, seq, prev_hash, digest, body, bool(linked))
