"""Frozen vectors: any change to the encoding, hashing or signing breaks this loudly.

`tests/vectors/chain-v1.jsonl` was produced once by `sample_records()` with the seed key in
`factories.py`; its public key is `tests/vectors/node-v1.pub`; `chain-v2.jsonl` and
`bodies-v2.hex` the same with bodies in format version 2. Never regenerate them to make this
test pass: a difference means edges and clouds of different versions would disagree.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ledger.book import replay
from ledger.chain import Checkpoint, Entry, NodeKey, load_public_key
from ledger.encoding import (
    ENTRY_TAG,
    ENTRY_TAG_V2,
    decode_transfer,
    encode_body,
    entry_preimage,
)
from ledger.export import parse_lines, record_line
from ledger.invariants import ledger_violations
from ledger.verify import verify_lines, verify_stored
from tests.ledger.factories import VECTOR_SEED, sample_records

VECTORS = Path(__file__).parent.parent / "vectors"


def test_chain_is_byte_for_byte_frozen() -> None:
    frozen = (VECTORS / "chain-v1.jsonl").read_text(encoding="utf-8").splitlines()
    assert [record_line(r) for r in sample_records()] == frozen  # type: ignore[arg-type]


def test_frozen_key_and_heads() -> None:
    key = load_public_key((VECTORS / "node-v1.pub").read_bytes())
    assert NodeKey.from_seed(VECTOR_SEED).key_id == "56475aa75463474c"
    lines = (VECTORS / "chain-v1.jsonl").read_text(encoding="utf-8").splitlines()
    verdict = verify_lines(lines, [key])
    assert verdict.ok, verdict.findings
    assert (verdict.entries, verdict.signed_through) == (6, 6)
    assert verdict.head is not None
    assert verdict.head.hex() == (VECTORS / "head-v1.txt").read_text().split()[1]


def test_chain_v2_is_byte_for_byte_frozen() -> None:
    records = sample_records(version=2)
    frozen = (VECTORS / "chain-v2.jsonl").read_text(encoding="utf-8").splitlines()
    assert [record_line(r) for r in records] == frozen  # type: ignore[arg-type]
    entries = [r for r in records if isinstance(r, Entry)]
    bodies = [bytes.fromhex(h) for h in (VECTORS / "bodies-v2.hex").read_text().split()]
    assert [encode_body(e.transfer, 2) for e in entries] == bodies
    assert [decode_transfer(b) for b in bodies] == [e.transfer for e in entries]


@pytest.mark.parametrize("version", [1, 2])
def test_frozen_heads_verify_as_lines_and_as_stored_rows(version: int) -> None:
    key = load_public_key((VECTORS / "node-v1.pub").read_bytes())
    lines = (VECTORS / f"chain-v{version}.jsonl").read_text(encoding="utf-8").splitlines()
    head = (VECTORS / f"head-v{version}.txt").read_text().split()[1]
    records = [r for _, r in parse_lines(lines)]
    rows = [
        (r.seq, r.prev_hash, r.hash, encode_body(r.transfer, r.version))
        for r in records
        if isinstance(r, Entry)
    ]
    checkpoints = [r for r in records if isinstance(r, Checkpoint)]
    for verdict in (
        verify_lines(lines, [key]),
        verify_stored("edge-0001", rows, checkpoints, [key]),
    ):
        assert verdict.ok, verdict.findings
        assert (verdict.entries, verdict.signed_through) == (6, 6)
        assert verdict.head is not None and verdict.head.hex() == head
    assert {r[3][:1] for r in rows} == ({b"{"} if version == 1 else {b"\x02"})


def test_each_body_is_hashed_under_its_own_domain_tag() -> None:
    """Version 1 and 2 preimages differ in their first bytes, whatever the bodies: a hash of
    one can never be taken for a hash of the other."""
    assert (ENTRY_TAG, ENTRY_TAG_V2) == (
        b"voltbook/ledger/entry/v1\x00",
        b"voltbook/ledger/entry/v2\x00",
    )
    for version, tag in ((1, ENTRY_TAG), (2, ENTRY_TAG_V2)):
        for entry in (r for r in sample_records(version=version) if isinstance(r, Entry)):
            body = encode_body(entry.transfer, version)
            preimage = entry_preimage(entry.node, entry.seq, entry.prev_hash, body)
            assert preimage.startswith(tag) and hashlib.sha256(preimage).digest() == entry.hash


def test_frozen_chain_keeps_the_invariants() -> None:
    lines = (VECTORS / "chain-v1.jsonl").read_text(encoding="utf-8").splitlines()
    transfers = [r.transfer for _, r in parse_lines(lines) if isinstance(r, Entry)]
    assert ledger_violations(transfers, replay(transfers).balances(), ["WX-0001"]) == []
