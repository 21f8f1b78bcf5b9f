"""Frozen uplink batches: a batch an edge of each format version sent still decodes, to the
same batch, on every cloud after it (`tests/vectors/batch-v*.hex`, the payloads as sent).

`sample_batch()` is what they hold: the six frozen version-2 bodies, two consumption legs whose
ids are derived from their refs (`ledger.entry_ids`), a cycle of readings, an event and a
command result. Never regenerate a frozen file to make this pass: a difference means an old
edge's batches would no longer be understood.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from ledger import entry_ids
from ledger.accounts import Unit
from ledger.chain import NodeKey, sign_checkpoint
from ledger.encoding import GENESIS_HASH
from ledger.encoding_v2 import encode_transfer_v2
from ledger.readings import ReadingRow
from ledger.transfers import Code, TimeSource, Transfer
from ledger.wire import Batch, LedgerPart, batch_text, decode_batch
from tests.ledger.factories import VECTOR_SEED

VECTORS = Path(__file__).parent.parent / "vectors"


def _leg(leg: str, amount: int, reg_from: int, reg_to: int) -> Transfer:
    return Transfer(
        id=entry_ids.consume("000000000001", reg_from, reg_to, leg),
        debit=f"A0001:{leg}",  # type: ignore[arg-type]
        credit="sys:energy_sales" if leg == "prepaid" else "sys:subsidy_used",  # type: ignore[arg-type]
        amount=amount,
        unit=Unit.FEN if leg == "prepaid" else Unit.WH,
        code=Code.CONSUME,
        time="2026-11-01T08:15:00+08:00",
        time_source=TimeSource.NTP,
        linked=leg == "subsidy",
        refs={
            "meter": "000000000001",
            "reg_from": reg_from,
            "reg_to": reg_to,
            "energy_wh": reg_to - reg_from,
        },
    )


def sample_batch() -> Batch:
    frozen = [bytes.fromhex(h) for h in (VECTORS / "bodies-v2.hex").read_text().split()]
    bodies = (*frozen, *(encode_transfer_v2(t) for t in (
        _leg("subsidy", 700, 4171050, 4171750), _leg("prepaid", 55, 4171050, 4171750)
    )))  # fmt: skip
    key = NodeKey.from_seed(VECTOR_SEED)
    checkpoint = sign_checkpoint(key, "edge-0001", 8, bytes(range(32)))
    rows = tuple(
        ReadingRow(f"00000000000{m}", 1793463300000 + 900000 * k, 4171050 + 700 * k + m,
                   "1,2,3,4" if m == 2 else None, 220.4, 3.182, 700.5, 0.998, 1, None,
                   {"hz": 50.0} if k == 0 else None)
        for k in range(3) for m in (1, 2)
    )  # fmt: skip
    return Batch(
        node="edge-0001",
        first=101,
        upto=112,
        ledger=LedgerPart(1, GENESIS_HASH, bodies, checkpoint.key_id, checkpoint.signature),
        readings=rows,
        events=(
            {
                "id": 7,
                "t": 1793463300000,
                "c": "alarm",
                "k": "relay_tripped",
                "d": {"meter": "000000000001"},
            },
        ),
        results=({"command_id": "ab" * 16, "status": "applied", "seqs": [3]},),
    )


@pytest.mark.parametrize("version", [1, 2])
def test_a_frozen_batch_decodes_to_the_batch_it_was(version: int) -> None:
    payload = bytes.fromhex((VECTORS / f"batch-v{version}.hex").read_text())
    assert decode_batch(payload) == sample_batch()


def test_this_edge_sends_the_current_format_byte_for_byte() -> None:
    """What this version sends inflates to the frozen version-2 frame (the DEFLATE stream
    itself may differ between zlib builds; the frame may not)."""
    payload = bytes.fromhex((VECTORS / "batch-v2.hex").read_text())
    assert zlib.decompressobj(-15).decompress(payload[3:]) == batch_text(sample_batch())
