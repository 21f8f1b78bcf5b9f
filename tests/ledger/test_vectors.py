"""Frozen vectors: any change to the encoding, hashing or signing breaks this loudly.

`tests/vectors/chain-v1.jsonl` was produced once by `sample_records()` with the seed key in
`factories.py`; its public key is `tests/vectors/node-v1.pub`. Never regenerate it to make this
test pass: a difference means edges and clouds of different versions would disagree.
"""

from __future__ import annotations

from pathlib import Path

from ledger.book import replay
from ledger.chain import Entry, NodeKey, load_public_key
from ledger.export import parse_lines, record_line
from ledger.invariants import ledger_violations
from ledger.verify import verify_lines
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


def test_frozen_chain_keeps_the_invariants() -> None:
    lines = (VECTORS / "chain-v1.jsonl").read_text(encoding="utf-8").splitlines()
    transfers = [r.transfer for _, r in parse_lines(lines) if isinstance(r, Entry)]
    assert ledger_violations(transfers, replay(transfers).balances(), ["WX-0001"]) == []
