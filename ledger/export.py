"""JSON-lines form of a chain: one entry or checkpoint per line (export, uplink, vectors).

Entry line: the transfer's canonical fields plus `type: "entry"`, `node`, `seq`, `prev_hash` and
`hash` (hex), and `version: 2` when the entry's body is in format version 2
(`ledger.encoding_v2`; the line is the same transfer either way, the version says which body
was hashed). Checkpoint line: `type: "checkpoint"`, `node`, `seq`, `head` (hex), `key_id`,
`signature` (hex). Key rotation line (`ledger.key_rotation`): `type: "key_rotation"` and the
rotation's signed fields. Line order is file order; the verifier judges it, it is never
re-sorted here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ledger.chain import Checkpoint, Entry
from ledger.encoding import TRANSFER_KEYS, decode_transfer_fields, transfer_fields
from ledger.encoding_v2 import FORMAT_V2
from ledger.errors import DecodeError
from ledger.key_rotation import KeyRotation
from ledger.signed import Rejected

Record = Entry | Checkpoint | KeyRotation


def entry_line(entry: Entry) -> str:
    fields = transfer_fields(entry.transfer)
    fields.update(
        type="entry",
        node=entry.node,
        seq=entry.seq,
        prev_hash=entry.prev_hash.hex(),
        hash=entry.hash.hex(),
    )
    if entry.version != 1:  # a version-1 line has no member for it (the frozen vectors)
        fields["version"] = entry.version
    return json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def checkpoint_line(cp: Checkpoint) -> str:
    return json.dumps(
        {
            "type": "checkpoint",
            "node": cp.node,
            "seq": cp.seq,
            "head": cp.head.hex(),
            "key_id": cp.key_id,
            "signature": cp.signature.hex(),
        },
        separators=(",", ":"),
    )


def rotation_line(rotation: KeyRotation) -> str:
    return json.dumps({"type": "key_rotation", **rotation.fields()}, separators=(",", ":"))


def record_line(record: Record) -> str:
    if isinstance(record, Entry):
        return entry_line(record)
    if isinstance(record, KeyRotation):
        return rotation_line(record)
    return checkpoint_line(record)


def _hash(fields: dict[str, Any], key: str) -> bytes:
    value = fields.get(key)
    if not isinstance(value, str) or len(value) != 64:
        raise DecodeError(f"{key} must be 64 hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise DecodeError(f"{key} is not hex") from exc


def _seq(fields: dict[str, Any]) -> int:
    seq = fields.get("seq")
    if type(seq) is not int or seq < 1:
        raise DecodeError("seq must be a positive integer")
    return seq


def _node(fields: dict[str, Any]) -> str:
    node = fields.get("node")
    if not isinstance(node, str) or not node:
        raise DecodeError("node must be a non-empty string")
    return node


def parse_record(line: str) -> Record:
    """Parse one line; raises DecodeError naming what is wrong."""
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc.msg}") from exc
    if not isinstance(fields, dict):
        raise DecodeError("a record must be a JSON object")
    kind = fields.pop("type", None)
    if kind == "entry":
        node, seq = _node(fields), _seq(fields)
        prev_hash, digest = _hash(fields, "prev_hash"), _hash(fields, "hash")
        version = fields.pop("version", 1)
        if version not in (1, FORMAT_V2) or type(version) is not int:
            raise DecodeError(f"unknown body version {version!r}")
        for chain_field in ("node", "seq", "prev_hash", "hash"):
            del fields[chain_field]
        if fields.keys() != TRANSFER_KEYS:
            raise DecodeError(f"entry has unknown fields {sorted(fields.keys() - TRANSFER_KEYS)}")
        return Entry(node, seq, prev_hash, digest, decode_transfer_fields(fields), version)
    if kind == "checkpoint":
        signature = fields.get("signature")
        key = fields.get("key_id")
        if not isinstance(signature, str) or not isinstance(key, str):
            raise DecodeError("checkpoint needs key_id and signature strings")
        try:
            raw_signature = bytes.fromhex(signature)
        except ValueError as exc:
            raise DecodeError("signature is not hex") from exc
        return Checkpoint(_node(fields), _seq(fields), _hash(fields, "head"), key, raw_signature)
    if kind == "key_rotation":
        try:
            return KeyRotation.from_fields(fields)
        except Rejected as exc:
            raise DecodeError(str(exc)) from None
    raise DecodeError(
        f"unknown record type {kind!r} (expected 'entry', 'checkpoint' or 'key_rotation')"
    )


def parse_lines(lines: Iterable[str]) -> Iterator[tuple[int, Record]]:
    """Parse non-blank lines, yielding (line number, record); DecodeError names the line."""
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield number, parse_record(line)
            except DecodeError as exc:
                raise DecodeError(f"line {number}: {exc}") from exc
