"""Ledger benchmark: append + hash + sign, and full verification, of 100 000 transfers.

The peer, measured in the same run, is the bare cost of the same number of SHA-256 and Ed25519
operations done directly with hashlib and `cryptography` over the same bytes: what any design
with a hash per entry and a signature per checkpoint must pay. The ratio (our rate / bare rate)
shows what our encoding, parsing and checks cost on top. Two checkpoint cadences are measured:
one signed checkpoint per entry (the worst case: as many signatures as transfers) and one per
100 entries (what the edge does per poll cycle).

Each cadence runs for both body formats: version 1 (canonical JSON) verified from its JSON-lines
export (`verify_lines`, what `ledger verify` reads), and version 2 (`ledger.encoding_v2`)
verified from the stored rows (`verify_stored`: seq, prev hash, hash and body as a store holds
them; every body hashed as stored, its id read in place; decoding a body is
`bench/decode_bench.py`'s figure). The bare peer of each hashes that run's own preimages.

    python bench/ledger_bench.py            # 100 000 transfers
    python bench/ledger_bench.py --smoke    # 2 000 transfers, a few seconds
"""

from __future__ import annotations

import argparse
import hashlib
import time

from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.chain import Chain, Checkpoint, Entry, NodeKey, checkpoint_message
from ledger.encoding import encode_body, entry_preimage
from ledger.export import record_line
from ledger.transfers import Code, TimeSource, Transfer
from ledger.verify import StoredEntry, Verdict, verify_lines, verify_stored

GOAL = 0.5


def make_transfers(n: int) -> list[Transfer]:
    cash = system_id(System.CASH_IN_TRANSIT)
    return [
        Transfer(
            id=(7 << 100) + i,
            debit=cash,
            credit=pocket_id(f"A{i % 997:04d}", Pocket.PREPAID),
            amount=100 + i % 5000,
            unit=Unit.FEN,
            code=Code.RECHARGE,
            time="2026-11-01T08:00:00+08:00",
            time_source=TimeSource.NTP,
            refs={"payment": f"WX{i:010d}", "operator": "op-7"},
        )
        for i in range(n)
    ]


def ours(
    transfers: list[Transfer], key: NodeKey, every: int, version: int
) -> tuple[float, float, int]:
    """Append, hash and sign (stored as JSON lines for version 1, as rows for version 2), then
    verify; returns both times and the bytes stored per entry."""
    start = time.perf_counter()
    chain = Chain("edge-bench", version=version)
    lines: list[str] = []
    rows: list[StoredEntry] = []
    checkpoints: list[Checkpoint] = []
    for i, t in enumerate(transfers, 1):
        entry = chain.append(t)
        if version == 1:
            lines.append(record_line(entry))
        else:
            rows.append(_row(entry))
        if i % every == 0 or i == len(transfers):
            checkpoint = chain.checkpoint(key)
            if version == 1:
                lines.append(record_line(checkpoint))
            else:
                checkpoints.append(checkpoint)
    append = time.perf_counter() - start
    start = time.perf_counter()
    verdict: Verdict
    if version == 1:
        verdict = verify_lines(lines, [key.public_key])
    else:
        verdict = verify_stored("edge-bench", rows, checkpoints, [key.public_key])
    verify = time.perf_counter() - start
    assert verdict.ok and verdict.entries == len(transfers), verdict.findings[:3]
    size = sum(len(line) + 1 for line in lines) + sum(len(r[3]) + 72 for r in rows)
    return append, verify, size


def _row(entry: Entry) -> StoredEntry:
    return entry.seq, entry.prev_hash, entry.hash, encode_body(entry.transfer, entry.version)


def bare(transfers: list[Transfer], key: NodeKey, every: int, version: int) -> tuple[float, float]:
    """The same number of SHA-256 + Ed25519 operations over the same bytes, nothing else."""
    preimages = [
        entry_preimage("edge-bench", i, bytes(32), encode_body(t, version))
        for i, t in enumerate(transfers, 1)
    ]
    signs = len(range(every, len(transfers) + 1, every)) + (len(transfers) % every != 0)
    messages = [checkpoint_message("edge-bench", i, bytes(32)) for i in range(signs)]
    sha256, private, public = hashlib.sha256, key.private_key, key.public_key
    start = time.perf_counter()
    for data in preimages:
        sha256(data).digest()
    signatures = [private.sign(m) for m in messages]
    append = time.perf_counter() - start
    start = time.perf_counter()
    for data in preimages:
        sha256(data).digest()
    for m, s in zip(messages, signatures, strict=True):
        public.verify(s, m)
    verify = time.perf_counter() - start
    return append, verify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 000 transfers, for CI")
    parser.add_argument("-n", type=int, default=100_000, help="number of transfers")
    args = parser.parse_args()
    n = 2_000 if args.smoke else args.n
    transfers = make_transfers(n)
    key = NodeKey.generate()
    print(f"ledger bench: {n} transfers")
    runs = (
        (1, 1, "checkpoint per entry, version 1 from JSON lines"),
        (1, 2, "checkpoint per entry, version 2 from stored rows"),
        (100, 1, "checkpoint per 100, version 1 from JSON lines"),
        (100, 2, "checkpoint per 100, version 2 from stored rows"),
    )
    for every, version, label in runs:
        our_append, our_verify, stored = ours(transfers, key, every, version)
        bare_append, bare_verify = bare(transfers, key, every, version)
        print(f"  {label} ({stored / n:.0f} B/entry stored):")
        for what, mine, peer in (
            ("append+hash+sign", our_append, bare_append),
            ("full verification", our_verify, bare_verify),
        ):
            ratio = peer / mine
            goal = (
                f" (goal >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'})"
                if "ver" in what
                else ""
            )
            print(
                f"    {what:18} {n / mine:10.0f} entries/s   bare sha256+ed25519 "
                f"{n / peer:10.0f} entries/s   ratio {ratio:.2f}{goal}"
            )


if __name__ == "__main__":
    main()
