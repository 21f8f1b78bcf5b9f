"""The sync wire format (MQTT payloads) between a concentrator and the cloud. Pure: no I/O.

Topics, `node` being the concentrator id (its certificate's CN; broker ACLs pin each device to
its own topics):

| topic              | way          | payload                                           |
|--------------------|--------------|---------------------------------------------------|
| `vb/{node}/up`     | edge → cloud | an uplink `Batch` (`encode_batch`)                |
| `vb/{node}/status` | edge → cloud | signed `Status` JSON, retained; the last will says offline |
| `vb/{node}/ack`    | cloud → edge | a signed `Ack` (`ledger.signed`, `ACK_TAG`)       |
| `vb/{node}/cmd`    | cloud → edge | a signed `Command` (`ledger.signed`)              |

**Batch.** `b"VB\x02"` then raw DEFLATE of a compact JSON object (format 2):

    {"node": "edge-0001", "first": 101, "upto": 180,     # the edge's outbox ids it carries
     "ledger": {"from": 41, "prev": "<hex>", "entries": {<columns>},
                "key_id": "…", "sig": "<checkpoint signature of the last entry>"} | null,
     "readings": {"meters": ["000000000001", ...], "cols": {<column>: [ints], ...}} | null,
     "events": [{"id": 3, "kind": "relay_tripped", ...}, ...],
     "results": [{"command_id": "…", "status": "applied", ...}, ...]}

Ledger entries travel as the canonical bodies the edge stored, or as what makes them again: the
receiver recomputes every hash from `prev` on (so a changed body cannot hide), checks the one
checkpoint signature over the last head and stores the bodies. When every body is version 2
(`ledger.encoding_v2`, binary, one encoding per transfer) the part carries their transfers as
columns in `entries` (`ledger.wire_entries`: ids the refs derive left out, registers as
differences; about 7 bytes an entry on the wire); otherwise as format 1 did: version-1
bodies (JSON text) as strings in `bodies`, a mix of versions as base64 in `stored`.

Format 1 (`b"VB\x01"`, `MAGIC_V1`) is the same object with `bodies` or `stored` only (version-2
bodies in base64: about 38 bytes an entry); a cloud decodes both, so an edge that has not been
updated keeps syncing. A cloud that predates format 2 refuses its magic, and the edge resends
until the cloud is upgraded.

A ledger part may carry `"rotations": [<key rotation>, …]` (`ledger.key_rotation`, at most
`MAX_ROTATIONS`): the node key's rotations at seq `from - 1` or later, so that a checkpoint
signed with a new key arrives with what makes that key the node's. Each must be signed by the
old key it names or the batch is refused; whether that key was the node's is the receiver's
(`KeySchedule.follow`).

Readings travel as columns of integers, each the difference from the same meter's previous
value in the batch (the first is absolute), so a 15-minute reading costs a few bytes
after compression; `None` stays `null`. Scales (exact for DL/T 645 resolutions): time in ms,
energy and tariff registers in Wh, voltage ×10, current ×1000, power ×10 (W), pf ×1000.
The rows are `ledger.readings.ReadingRow`s; their columns:

    m: index into meters   t e u i p pf r: the scaled fields (`WIRE_COLUMNS`)
    t1 … t4: tariff registers, n: how many a row has (null: no `tariff_wh`)
    s: `status` as is, x: `extra` as is (a JSON object) — each left out when all rows have none

**Decoding is total.** `decode_batch` and `Status.decode` take any bytes and return a value or
raise `WireError`, never anything else: the JSON goes through `ledger.untrusted.load_json`
(bounded size, nesting, digits and floats; unique keys; no lone surrogate and no NUL character,
which PostgreSQL refuses in text), counters and every reading column value (after the deltas
are summed) lie in the signed 64-bit range, columns have one length, a tariff count is 0..4 and
a relay 0 or 1. What a database column holds beyond that is `cloud.ingest.checks`' business.

**Ack.** `{"node", "seq", "head", "upto", "status", "reason", "now"}` signed by the cloud:
`status` is `ok` (stored everything up to outbox id `upto` and ledger `seq`/`head`), `gap` (the
batch does not continue the cloud's copy: resend from after `upto`), `refused` (the batch is
malformed; `reason` says why) or `quarantined` (the node's chain forked or its key is wrong;
nothing more is accepted until an operator clears it). `now` is the cloud's clock. `oplog`, when
present, is the cloud's latest signed operator-log head (`ledger.signed.OplogHead`): the
concentrator keeps the highest it saw, a copy of the anchor outside the cloud's database (an
older ack without it decodes as before, and an older edge ignores it).

**Status.** `{"node", "online", "head", "acked", "commands", "accounts", "key_id", "sig"}`,
signed with the node's key like a checkpoint (`ledger.signed`, `STATUS_TAG`); the cloud takes
only a status the node's registered key verifies (`Status.open`). `accounts`, the inventory
(`{owner: {"shop", "building", "floor", "meters": [{"address", "protocol"}]}}`), is re-sent
whenever it changes; it is what the node claims to hold, which the cloud checks against its
registry and the commands it sent, never the truth about who owns what.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.chain import NodeKey
from ledger.encoding import GENESIS_HASH
from ledger.encoding_v2 import FORMAT_V2
from ledger.errors import DecodeError
from ledger.key_rotation import KeyRotation
from ledger.readings import READING_FIELDS, ReadingRow
from ledger.signed import STATUS_TAG, OplogHead, Rejected, open_signed, sign
from ledger.untrusted import load_json
from ledger.wire_entries import decode_entries, encode_entries

MAGIC = b"VB\x02"  # format 2: what this version sends
MAGIC_V1 = b"VB\x01"  # format 1: still decoded (edges not yet updated)
# Any DEFLATE level decodes the same: the level is the sender's choice of CPU against bytes.
# Measured on a day of 64 meters (8 batches of 32 KB): level 6 is 7 % more bytes for 40 % of
# level 9's CPU (31 vs 79 ms); the bytes per reading are the scarcer resource, so 9.
BATCH_LEVEL = 9
MAX_BATCH_BYTES = 1 << 20  # what the cloud inflates at most: a batch is never bigger
TOPIC_ROOT = "vb"
_V2 = bytes((FORMAT_V2,))
MAX_COUNTER = 2**63 - 1  # a seq or outbox id: what SQLite's INTEGER holds
MAX_ROTATIONS = 8  # key rotations one ledger part (or status) carries
KEY_ROTATIONS = "key_rotations"  # the member of a status's extra that carries them


def topic(node: str, leaf: str) -> str:
    return f"{TOPIC_ROOT}/{node}/{leaf}"


class WireError(DecodeError):
    """A payload that is not a valid batch, ack or status (a `ValueError` too)."""


# Scaled reading columns: (`ReadingRow` field, wire column, scale); `None` scale = integer as is.
# `tariff_wh` goes as one column per register, `status` and `extra` as they are.
WIRE_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("time", "t", None),
    ("energy_wh", "e", None),
    ("voltage", "u", 10),
    ("current", "i", 1000),
    ("power", "p", 10),
    ("pf", "pf", 1000),
    ("relay", "r", None),
)
TARIFF_COLUMNS = ("t1", "t2", "t3", "t4")  # sharp, peak, flat, valley registers (Wh)


@dataclass(frozen=True, slots=True)
class LedgerPart:
    from_seq: int
    prev: bytes
    bodies: tuple[bytes, ...]
    key_id: str
    signature: bytes
    rotations: tuple[KeyRotation, ...] = ()

    @property
    def last_seq(self) -> int:
        return self.from_seq + len(self.bodies) - 1


@dataclass(frozen=True, slots=True)
class Batch:
    node: str
    first: int
    upto: int
    ledger: LedgerPart | None = None
    readings: tuple[ReadingRow, ...] = ()
    events: tuple[Mapping[str, Any], ...] = ()
    results: tuple[Mapping[str, Any], ...] = ()


def _scaled(value: Any, scale: int | None) -> int | None:
    if value is None:
        return None
    return int(value) if scale is None else round(value * scale)


def _unscaled(value: int | None, scale: int | None) -> Any:
    if value is None or scale is None:
        return value
    return value / scale


def _delta(values: Iterable[int | None], meters: Sequence[int]) -> list[int | None]:
    last: dict[int, int] = {}
    out: list[int | None] = []
    for meter, value in zip(meters, values, strict=True):
        if value is None:
            out.append(None)
            continue
        out.append(value - last.get(meter, 0))
        last[meter] = value
    return out


def _undelta(deltas: Iterable[int | None], meters: Sequence[int]) -> list[int | None]:
    last: dict[int, int] = {}
    out: list[int | None] = []
    for meter, delta in zip(meters, deltas, strict=True):
        if delta is None:
            out.append(None)
            continue
        if type(delta) is not int:
            raise WireError(f"reading column holds {delta!r}, not an integer")
        value = last.get(meter, 0) + delta
        out.append(value)
        last[meter] = value
    values = [v for v in out if v is not None]  # every sum is one of them: bound them at once
    if values and not -MAX_COUNTER <= min(values) <= max(values) <= MAX_COUNTER:
        raise WireError("a reading column sums beyond 64 bits")
    return out


def _encode_readings(rows: Sequence[ReadingRow]) -> dict[str, Any] | None:
    if not rows:
        return None
    by_field = dict(zip(READING_FIELDS, zip(*rows, strict=True), strict=True))
    names: dict[str, int] = {}
    index = [names.setdefault(meter, len(names)) for meter in by_field["meter"]]
    cols: dict[str, Any] = {"m": index}
    for name, wire, scale in WIRE_COLUMNS:
        cols[wire] = _delta((_scaled(v, scale) for v in by_field[name]), index)
    tariffs = [None if t is None else [int(x) for x in t.split(",")] for t in by_field["tariff_wh"]]
    for k, wire in enumerate(TARIFF_COLUMNS):
        column = [None if t is None or len(t) <= k else t[k] for t in tariffs]
        cols[wire] = _delta(column, index)
    cols["n"] = [None if t is None else len(t) for t in tariffs]
    if any(v is not None for v in by_field["status"]):
        cols["s"] = list(by_field["status"])
    if any(v is not None for v in by_field["extra"]):
        cols["x"] = list(by_field["extra"])
    return {"meters": list(names), "cols": cols}


def _decode_readings(part: Any) -> tuple[ReadingRow, ...]:
    if part is None:
        return ()
    try:
        meters: list[str] = part["meters"]
        cols: dict[str, Any] = part["cols"]
        index: list[int] = cols["m"]
        count = len(index)
        if not all(isinstance(m, str) for m in meters) or not all(
            type(i) is int and 0 <= i < len(meters) for i in index
        ):
            raise WireError("reading meters/index malformed")
        values = {
            name: [_unscaled(v, scale) for v in _undelta(cols[wire], index)]
            for name, wire, scale in WIRE_COLUMNS
        }
        registers = [_undelta(cols[wire], index) for wire in TARIFF_COLUMNS]
        widths: list[int | None] = cols["n"]
        status = cols.get("s", [None] * count)
        extra = cols.get("x", [None] * count)
        columns = [*values.values(), *registers, widths, status, extra]
        if any(not isinstance(c, list) or len(c) != count for c in columns):
            raise WireError("reading columns differ in length")
        _check_widths(widths, registers)
        if not all(r is None or r in (0, 1) for r in values["relay"]):
            raise WireError("a relay is neither 1 (closed) nor 0 (open)")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"readings part malformed: {exc!r:.200}") from exc
    tariffs = [
        None if width is None else ",".join(str(registers[j][k]) for j in range(width))
        for k, width in enumerate(widths)
    ]
    by_field = {"meter": [meters[i] for i in index], **values, "tariff_wh": tariffs,
                "status": status, "extra": extra}  # fmt: skip
    return tuple(map(ReadingRow._make, zip(*(by_field[f] for f in READING_FIELDS), strict=True)))


def _check_widths(widths: list[Any], registers: list[list[int | None]]) -> None:
    """Each row's tariff count is None or 0..4, and its first that many registers are given."""
    kinds = {type(w) for w in widths}
    counts = set(widths) - {None}
    if not kinds <= {int, type(None)} or not counts <= set(range(len(TARIFF_COLUMNS) + 1)):
        raise WireError(f"a tariff count is not 0..{len(TARIFF_COLUMNS)}")
    for j, column in enumerate(registers):
        if None in column and any(
            value is None and width is not None and width > j
            for value, width in zip(column, widths, strict=True)
        ):
            raise WireError(f"a row counts tariff register {j + 1}, which it lacks")


def batch_text(batch: Batch) -> bytes:
    """The batch's compact JSON, before compression (what the cloud inflates)."""
    ledger = None
    if batch.ledger is not None:
        part = batch.ledger
        ledger = {"from": part.from_seq, "prev": part.prev.hex()}
        entries = encode_entries(part.bodies)
        if entries is not None:
            ledger["entries"] = entries
        elif any(b[:1] == _V2 for b in part.bodies):
            ledger["stored"] = [base64.b64encode(b).decode() for b in part.bodies]
        else:
            ledger["bodies"] = [b.decode() for b in part.bodies]
        ledger.update(key_id=part.key_id, sig=part.signature.hex())
        if part.rotations:
            ledger["rotations"] = [r.fields() for r in part.rotations]
    doc = {
        "node": batch.node,
        "first": batch.first,
        "upto": batch.upto,
        "ledger": ledger,
        "readings": _encode_readings(batch.readings),
        "events": list(batch.events),
        "results": list(batch.results),
    }
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode()


def compress_batch(text: bytes) -> bytes:
    """The payload of a batch's JSON `text` (`batch_text`): the magic, then raw DEFLATE."""
    deflate = zlib.compressobj(BATCH_LEVEL, zlib.DEFLATED, -15, 9)
    return MAGIC + deflate.compress(text) + deflate.flush()


def encode_batch(batch: Batch) -> bytes:
    return compress_batch(batch_text(batch))


def decode_batch(payload: bytes) -> Batch:
    """Raises `WireError` for anything that is not a well-formed batch (before any storing)."""
    if not payload.startswith((MAGIC, MAGIC_V1)):
        raise WireError("not a Voltbook batch (bad magic)")
    columns = payload.startswith(MAGIC)  # format 2: the entries may come as columns
    inflate = zlib.decompressobj(-15)
    try:
        text = inflate.decompress(payload[len(MAGIC) :], MAX_BATCH_BYTES)
    except zlib.error as exc:
        raise WireError(f"batch does not inflate: {exc}") from exc
    if inflate.unconsumed_tail:
        raise WireError(f"batch inflates beyond {MAX_BATCH_BYTES} bytes")
    try:
        doc = _object(load_json(text, max_bytes=MAX_BATCH_BYTES, allow_nul=False), "a batch")
        ledger = doc["ledger"]
        part = None
        if ledger is not None:
            part = LedgerPart(
                from_seq=_positive(ledger["from"], "ledger.from"),
                prev=_digest(ledger["prev"]),
                bodies=_bodies(_object(ledger, "ledger"), columns=columns),
                key_id=_text(ledger["key_id"], "ledger.key_id"),
                signature=bytes.fromhex(_text(ledger["sig"], "ledger.sig")),
                rotations=_rotations(ledger.get("rotations", [])),
            )
            if not part.bodies:
                raise WireError("ledger part without entries")
        batch = Batch(
            node=_text(doc["node"], "node"),
            first=_positive(doc["first"], "first"),
            upto=_positive(doc["upto"], "upto"),
            ledger=part,
            readings=_decode_readings(doc["readings"]),
            events=tuple(_objects(doc["events"], "events")),
            results=tuple(_objects(doc["results"], "results")),
        )
    except (DecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"batch malformed: {exc!s:.200}") from exc
    if batch.upto < batch.first:
        raise WireError("upto before first")
    return batch


def _rotations(items: Any) -> tuple[KeyRotation, ...]:
    if not isinstance(items, list) or len(items) > MAX_ROTATIONS:
        raise WireError(f"ledger.rotations must be a list of at most {MAX_ROTATIONS}")
    try:
        return tuple(KeyRotation.from_fields(item) for item in items)
    except Rejected as exc:
        raise WireError(f"ledger.rotations: {exc}") from None


def _bodies(ledger: dict[str, Any], *, columns: bool) -> tuple[bytes, ...]:
    """The stored bytes of the entries: `bodies` (text), `stored` (base64) or, in format 2,
    `entries` (columns), one of them."""
    given = [key for key in ("bodies", "stored", "entries") if key in ledger]
    if len(given) != 1 or (given == ["entries"] and not columns):
        raise WireError("ledger part needs a list of either bodies or stored bodies"
                        f"{' or entries' if columns else ''}")  # fmt: skip
    if given == ["entries"]:
        return decode_entries(ledger["entries"])
    if given == ["bodies"]:
        return tuple(_text(b, "an entry body").encode() for b in ledger["bodies"])
    if not isinstance(ledger["stored"], list):
        raise WireError("ledger part needs a list of stored bodies")
    try:
        return tuple(base64.b64decode(_text(b, "a stored body"), validate=True)
                     for b in ledger["stored"])  # fmt: skip
    except binascii.Error as exc:
        raise WireError(f"a stored body is not base64: {exc}") from exc


def _positive(value: Any, what: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_COUNTER:
        raise WireError(f"{what} must be an integer in 1..{MAX_COUNTER}, got {value!r:.30}")
    return value


def _counter(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_COUNTER:
        raise WireError(f"{what} must be an integer in 0..{MAX_COUNTER}, got {value!r:.30}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise WireError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _digest(value: Any) -> bytes:
    raw = bytes.fromhex(str(value))
    if len(raw) != len(GENESIS_HASH):
        raise WireError("a hash is 32 bytes")
    return raw


def _objects(value: Any, what: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise WireError(f"{what} must be a list of objects")
    return value


class AckStatus(StrEnum):
    OK = "ok"
    GAP = "gap"
    REFUSED = "refused"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class Ack:
    node: str
    seq: int  # highest ledger seq the cloud holds for this node
    head: bytes  # its hash (GENESIS_HASH when seq is 0)
    upto: int  # highest outbox id the cloud has stored (0: none)
    status: AckStatus
    now: str  # the cloud's clock, ISO 8601 with zone
    reason: str = ""
    oplog: OplogHead | None = None  # the cloud's latest signed operator-log head, if it has one

    def fields(self) -> dict[str, Any]:
        fields = {
            "node": self.node,
            "seq": self.seq,
            "head": self.head.hex(),
            "upto": self.upto,
            "status": self.status.value,
            "now": self.now,
            "reason": self.reason,
        }
        if self.oplog is not None:  # absent, not null: an ack without one is as before
            fields["oplog"] = self.oplog.fields()
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Ack:
        try:
            seq, upto = fields["seq"], fields["upto"]
            if not all(type(n) is int and 0 <= n <= MAX_COUNTER for n in (seq, upto)):
                raise WireError(f"ack seq/upto must be integers in 0..{MAX_COUNTER}")
            return cls(
                node=str(fields["node"]),
                seq=seq,
                head=_digest(fields["head"]),
                upto=upto,
                status=AckStatus(fields["status"]),
                now=str(fields["now"]),
                reason=str(fields.get("reason", "")),
                oplog=_oplog_head(fields.get("oplog")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, WireError):
                raise
            raise WireError(f"ack malformed: {exc!r:.200}") from exc


def _oplog_head(value: Any) -> OplogHead | None:
    if value is None:
        return None
    try:
        return OplogHead.from_fields(value)
    except Rejected as exc:
        raise WireError(f"ack oplog head: {exc}") from None


@dataclass(frozen=True, slots=True)
class Status:
    """Presence and inventory, published retained, signed with the node's key (`signed`,
    `ledger.signed.STATUS_TAG`): on connect, and again whenever the inventory changes; the
    last will is `Status(node, False)`, signed when the link is made."""

    node: str
    online: bool
    head: int = 0  # the edge's chain head seq
    acked: int = 0  # the highest seq the cloud acknowledged, as the edge knows it
    commands: int = 0  # the highest command seq the edge applied (the cloud resends after it)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "online": self.online,
            "head": self.head,
            "acked": self.acked,
            "commands": self.commands,
            **self.extra,
        }

    def signed(self, key: NodeKey) -> bytes:
        """The payload: the fields, `key_id` and `sig` (`ledger.signed.sign`)."""
        return sign(STATUS_TAG, self.fields(), key)

    @classmethod
    def open(cls, payload: bytes, keys: Mapping[str, Ed25519PublicKey]) -> Status:
        """The status in `payload` if one of `keys` (the node's) signed it; `WireError` for any
        other bytes: malformed (`decode`), unsigned, or signed by another key."""
        status = cls.decode(payload)
        try:
            open_signed(STATUS_TAG, payload, keys)
        except Rejected as exc:
            raise WireError(f"status {exc}") from exc
        return status

    @classmethod
    def decode(cls, payload: bytes) -> Status:
        """The status in `payload`, its signature unchecked (`open` checks it); `WireError` for
        any bytes that are not one (see the module's "Decoding is total")."""
        try:
            doc = _object(load_json(payload, allow_nul=False), "a status")
            if type(doc["online"]) is not bool:
                raise WireError("status online must be true or false")
            return cls(
                node=_text(doc["node"], "status node"),
                online=doc["online"],
                head=_counter(doc["head"], "status head"),
                acked=_counter(doc["acked"], "status acked"),
                commands=_counter(doc["commands"], "status commands"),
                extra={k: v for k, v in doc.items() if k not in _STATUS_KEYS},
            )
        except (DecodeError, KeyError, TypeError) as exc:
            if isinstance(exc, WireError):
                raise
            raise WireError(f"status malformed: {exc!s:.200}") from exc


def status_rotations(status: Status) -> tuple[KeyRotation, ...]:
    """The node key's rotations a status carries in `extra[KEY_ROTATIONS]` (those after the
    cloud's last ack: what makes a new key the node's before a batch carried them); `WireError`
    for anything that is not a list of them."""
    return _rotations(status.extra.get(KEY_ROTATIONS, []))


_STATUS_KEYS = frozenset(("node", "online", "head", "acked", "commands", "key_id", "sig"))
