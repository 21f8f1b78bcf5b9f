"""Canonical encoding of transfers, chain entries and checkpoints — the bytes that are hashed.

Transfer body: canonical JSON (the RFC 8785 subset we need), UTF-8:
- an object with exactly these keys, sorted by code point, no whitespace:
  `amount, code, credit, debit, id, kind, linked, pending_id, refs, time, time_source, unit`;
- `id` and `pending_id` as 32 lower-case hex digits (128 bits), `pending_id` null when absent;
- integers in decimal, |n| ≤ 2^53−1, no floats anywhere; `linked` true/false;
- `refs` an object with sorted keys matching `[a-z][a-z0-9_]{0,31}`, string or integer values;
- strings with only `"` `\\` and U+0000–U+001F escaped (`\\b \\t \\n \\f \\r` short, others
  `\\u00xx` lower case), everything else as raw UTF-8; no lone surrogates.

Example (`tests/vectors/` freezes more):
`{"amount":500,"code":"recharge","credit":"A0001:prepaid","debit":"sys:cash_in_transit",
"id":"000…01","kind":"single","linked":false,"pending_id":null,"refs":{"payment":"P1"},
"time":"2026-11-01T08:00:00+08:00","time_source":"ntp","unit":"fen"}`

Format version 2 (`ledger.encoding_v2`) is a compact binary body whose first byte is 0x02; a
version-1 body's first byte is `{`. `decode_transfer` takes either.

Entry hash: SHA-256 over
`tag | len(node) (1 byte) | node (ASCII) | seq (8 bytes, big-endian) | prev_hash (32 bytes)
| body`, the tag being `b"voltbook/ledger/entry/v1\\x00"` for a version-1 body and
`b"voltbook/ledger/entry/v2\\x00"` for a version-2 body: the two can never hash alike, and a
chain may switch from version 1 to version 2 at any entry.
The first entry of a node has seq 1 and prev_hash 32 zero bytes.

Checkpoint signature: Ed25519 over
`b"voltbook/ledger/checkpoint/v1\\x00" | len(node) (1 byte) | node | seq (8 bytes, big-endian)
| head hash (32 bytes)`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from ledger.accounts import AccountId, Unit
from ledger.encoding_v2 import FORMAT_V2, decode_transfer_v2, encode_transfer_v2
from ledger.errors import DecodeError, InvalidValue, LedgerError
from ledger.transfers import Code, Kind, TimeSource, Transfer

E = TypeVar("E", bound=Enum)

ENTRY_TAG = b"voltbook/ledger/entry/v1\x00"
ENTRY_TAG_V2 = b"voltbook/ledger/entry/v2\x00"
_V2 = bytes((FORMAT_V2,))
CHECKPOINT_TAG = b"voltbook/ledger/checkpoint/v1\x00"
GENESIS_HASH = bytes(32)
TRANSFER_KEYS = frozenset(
    (
        "amount",
        "code",
        "credit",
        "debit",
        "id",
        "kind",
        "linked",
        "pending_id",
        "refs",
        "time",
        "time_source",
        "unit",
    )
)

_dumps = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
).encode


def canonical_json(value: object) -> bytes:
    """Canonical JSON bytes of any value made of dicts, lists, strings, ints, bools and None
    (sorted keys, no whitespace, raw UTF-8): what commands and acknowledgements sign."""
    return _dumps(value).encode()


def transfer_fields(t: Transfer) -> dict[str, Any]:
    """The JSON object of a transfer (before serialisation)."""
    return {
        "amount": t.amount,
        "code": t.code.value,
        "credit": t.credit,
        "debit": t.debit,
        "id": f"{t.id:032x}",
        "kind": t.kind.value,
        "linked": t.linked,
        "pending_id": None if t.pending_id is None else f"{t.pending_id:032x}",
        "refs": dict(t.refs),
        "time": t.time,
        "time_source": t.time_source.value,
        "unit": t.unit.value,
    }


def encode_transfer(t: Transfer) -> bytes:
    """The canonical bytes of a transfer."""
    return _dumps(transfer_fields(t)).encode()


def _lookup(enum: type[E], value: object) -> E:
    """Enum member by value; a dict lookup (Enum.__call__ is slow on the verify path)."""
    member = enum._value2member_map_.get(value) if isinstance(value, str) else None
    if member is None:
        raise DecodeError(f"{value!r} is not a valid {enum.__name__}")
    return member  # type: ignore[return-value]


def _hex128(value: object, what: str) -> int:
    if not isinstance(value, str) or len(value) != 32 or value != value.lower():
        raise DecodeError(f"{what} must be 32 lower-case hex digits")
    try:
        return int(value, 16)
    except ValueError as exc:
        raise DecodeError(f"{what} is not hex") from exc


def decode_transfer_fields(fields: Mapping[str, Any]) -> Transfer:
    """Build a transfer from its JSON object, refusing anything non-canonical."""
    missing = TRANSFER_KEYS - fields.keys()
    if missing:
        raise DecodeError(f"transfer lacks {', '.join(sorted(missing))}")
    try:
        pending = fields["pending_id"]
        refs = fields["refs"]
        if not isinstance(refs, dict):
            raise DecodeError("refs must be an object")
        for value in (fields["amount"], *refs.values()):
            if isinstance(value, float):
                raise DecodeError("floats are not allowed in a transfer")
        return Transfer(
            id=_hex128(fields["id"], "id"),
            debit=AccountId(fields["debit"]),
            credit=AccountId(fields["credit"]),
            amount=fields["amount"],
            unit=_lookup(Unit, fields["unit"]),
            code=_lookup(Code, fields["code"]),
            time=fields["time"],
            time_source=_lookup(TimeSource, fields["time_source"]),
            kind=_lookup(Kind, fields["kind"]),
            pending_id=None if pending is None else _hex128(pending, "pending_id"),
            linked=fields["linked"],
            refs=refs,
        )
    except DecodeError:
        raise
    except (LedgerError, ValueError, TypeError) as exc:
        raise DecodeError(f"invalid transfer: {exc}") from exc


def encode_body(t: Transfer, version: int) -> bytes:
    """The body of a transfer in format `version` (1: canonical JSON, 2: `ledger.encoding_v2`)."""
    if version == FORMAT_V2:
        return encode_transfer_v2(t)
    if version == 1:
        return encode_transfer(t)
    raise InvalidValue(f"no body format {version}")


def body_version(body: bytes) -> int:
    return FORMAT_V2 if body[:1] == _V2 else 1


def decode_transfer(data: bytes) -> Transfer:
    """Decode a body of either format; refuses bytes that are not exactly the canonical
    encoding (for version 1: valid JSON that is not canonical)."""
    if data[:1] == _V2:
        return decode_transfer_v2(data)
    try:
        fields = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
    if not isinstance(fields, dict):
        raise DecodeError("a transfer must be a JSON object")
    if fields.keys() != TRANSFER_KEYS:
        raise DecodeError(f"unexpected keys {sorted(fields.keys() - TRANSFER_KEYS)}")
    transfer = decode_transfer_fields(fields)
    if encode_transfer(transfer) != data:
        raise DecodeError("transfer is not in canonical form")
    return transfer


@functools.lru_cache(maxsize=256)  # one node per chain: its id is encoded for every entry
def _node_bytes(node: str) -> bytes:
    raw = node.encode("ascii")
    if not 0 < len(raw) < 256:
        raise LedgerError(f"node id must be 1-255 ASCII bytes, got {node!r}")
    return bytes([len(raw)]) + raw


def entry_prefix(node: str, body: bytes) -> bytes:
    """How every entry preimage of `node` with a body of `body`'s format begins: tag and node."""
    return (ENTRY_TAG_V2 if body[:1] == _V2 else ENTRY_TAG) + _node_bytes(node)


def entry_preimage(node: str, seq: int, prev_hash: bytes, body: bytes) -> bytes:
    return b"".join((entry_prefix(node, body), seq.to_bytes(8, "big"), prev_hash, body))


def checkpoint_message(node: str, seq: int, head: bytes) -> bytes:
    return b"".join((CHECKPOINT_TAG, _node_bytes(node), seq.to_bytes(8, "big"), head))
