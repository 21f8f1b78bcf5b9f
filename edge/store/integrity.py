"""The boot-time check of the ledger rows: recompute the whole chain from what is stored.

SQLite's own `PRAGMA integrity_check` finds a damaged file, but not a row that somebody changed
with another tool: to SQLite that is a valid row. So at every open the chain is recomputed from
the stored rows: each body must be a canonical transfer whose id matches its row, each hash must
be SHA-256 of (node, seq, prev hash, body), each prev hash the hash of the row before, seqs
contiguous from the start (seq 1, or the row after a trusted (seq, head) such as a verified
balance snapshot's) up to the head recorded in `meta`, and every checkpoint after the pruned
prefix and the cloud's acknowledged head must match the entry at their seq. Each problem names
the seq and what is wrong, including "this row belongs at seq n" for rows whose seq was changed
(swapped rows).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from ledger.chain import entry_hash
from ledger.encoding import GENESIS_HASH, decode_transfer
from ledger.errors import DecodeError
from ledger.transfers import Transfer

MAX_PROBLEMS = 20  # enough to see the pattern of a damage without drowning the operator


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int | None
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.detail}" if self.seq is not None else self.detail


@dataclass(slots=True)
class LedgerScan:
    """What the scan found: the head and any problems."""

    head_seq: int = 0
    head_hash: bytes = GENESIS_HASH
    problems: list[Problem] = field(default_factory=list)

    def add(self, seq: int | None, detail: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(seq, detail))


def parse_head(text: str | None) -> tuple[int, bytes]:
    """`meta` heads are stored as "seq:hex hash"."""
    if not text:
        return 0, GENESIS_HASH
    seq, _, digest = text.partition(":")
    return int(seq), bytes.fromhex(digest)


def format_head(seq: int, digest: bytes) -> str:
    return f"{seq}:{digest.hex()}"


def _belongs_at(
    conn: sqlite3.Connection, node: str, prev_hash: bytes, body: bytes, digest: bytes
) -> int | None:
    """The seq a row's content was hashed for, if it is some other seq (a moved row)."""
    if prev_hash == GENESIS_HASH:
        candidate = 1
    else:
        row = conn.execute("SELECT seq FROM ledger WHERE hash = ?", (prev_hash,)).fetchone()
        if row is None:
            return None
        candidate = int(row[0]) + 1
    return candidate if entry_hash(node, candidate, prev_hash, body) == digest else None


EntrySink = Callable[[int, Transfer], str | None]  # seq, transfer -> a problem, or None


def scan_ledger(
    conn: sqlite3.Connection,
    node: str,
    sink: EntrySink,
    start: tuple[int, bytes] = (0, GENESIS_HASH),
    until: int | None = None,
) -> LedgerScan:
    """Recompute the chain row by row after the trusted `start` (seq, head) up to `until`,
    handing each decoded transfer to `sink` in chain order (streamed: the history is never
    held in memory)."""
    scan = LedgerScan(start[0], start[1])
    expected = start[0] + 1
    previous_hash: bytes | None = start[1]
    rows = conn.execute(
        "SELECT seq, transfer_id, body, prev_hash, hash FROM ledger WHERE seq > ? AND seq <= ? "
        "ORDER BY seq",
        (start[0], until if until is not None else 2**63 - 1),
    )
    for seq, transfer_id, raw_body, raw_prev, raw_hash in rows:
        body, prev_hash, digest = bytes(raw_body), bytes(raw_prev), bytes(raw_hash)
        if seq != expected:
            missing = f"{expected}..{seq - 1}" if seq - 1 > expected else f"{expected}"
            scan.add(expected, f"seq {missing} missing: rows were deleted")
            previous_hash = None  # the link across a gap cannot be judged
        expected = seq + 1
        try:
            transfer = decode_transfer(body)
        except DecodeError as exc:
            scan.add(seq, f"body is not a canonical transfer ({exc}): the row was edited")
            previous_hash = digest
            continue
        if bytes(transfer_id) != transfer.id.to_bytes(16, "big"):
            scan.add(seq, "transfer_id column differs from the id in the body: the row was edited")
        if entry_hash(node, seq, prev_hash, body) != digest:
            # The diagnosis scans the table, so only for problems that will be reported.
            moved = (
                _belongs_at(conn, node, prev_hash, body, digest)
                if len(scan.problems) < MAX_PROBLEMS
                else None
            )
            if moved is not None:
                scan.add(seq, f"row holds the entry of seq {moved}: rows were renumbered/swapped")
            else:
                scan.add(seq, "content does not match its hash: the body or hash was edited")
        elif previous_hash is not None and prev_hash != previous_hash:
            scan.add(
                seq,
                f"prev_hash does not match the hash of seq {seq - 1}: seq {seq - 1} was rewritten",
            )
        previous_hash = digest
        if (problem := sink(seq, transfer)) is not None:
            scan.add(seq, problem)
        scan.head_seq, scan.head_hash = seq, digest
    return scan


def check_store(
    conn: sqlite3.Connection,
    node: str,
    sink: EntrySink,
    start: tuple[int, bytes] = (0, GENESIS_HASH),
) -> LedgerScan:
    """Scan the ledger after `start` and check the recorded head, the checkpoints after the
    pruned prefix and the acknowledged head."""
    scan = scan_ledger(conn, node, sink, start)
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    anchor_seq, anchor_hash = parse_head(meta.get("anchor"))
    if (
        anchor_seq
        and conn.execute("SELECT 1 FROM ledger WHERE seq <= ? LIMIT 1", (anchor_seq,)).fetchone()
    ):
        scan.add(anchor_seq, "rows before the pruned anchor are back: rows were inserted")
    head_seq, head_hash = parse_head(meta.get("head"))
    if head_seq > scan.head_seq:
        scan.add(
            scan.head_seq + 1,
            f"entries {scan.head_seq + 1}..{head_seq} missing: the store's head is seq "
            f"{head_seq} but the rows end at {scan.head_seq} (tail rows deleted)",
        )
    elif head_seq < scan.head_seq:
        scan.add(head_seq + 1, f"rows after the recorded head seq {head_seq}: rows were inserted")
    elif head_seq and head_hash != scan.head_hash:
        scan.add(head_seq, "last entry differs from the recorded head hash: it was rewritten")
    mismatched = conn.execute(
        """SELECT c.seq, l.seq IS NULL FROM checkpoints c LEFT JOIN ledger l ON l.seq = c.seq
           WHERE l.hash IS NOT c.head AND c.seq > ? ORDER BY c.seq""",
        (anchor_seq,),
    ).fetchall()
    for seq, missing in mismatched:
        what = "has no entry" if missing else "head differs from the entry's hash"
        scan.add(seq, f"signed checkpoint {what}: the chain was rewritten after signing")
    ack_seq, ack_hash = parse_head(meta.get("ack"))
    if ack_seq < anchor_seq:
        scan.add(ack_seq, f"pruned to seq {anchor_seq}, past the cloud's acknowledged {ack_seq}")
    elif ack_seq == anchor_seq:
        if ack_hash != anchor_hash:
            scan.add(ack_seq, "the head the cloud acknowledged is not the pruned anchor's")
    else:
        row = conn.execute("SELECT hash FROM ledger WHERE seq = ?", (ack_seq,)).fetchone()
        if row is None or bytes(row[0]) != ack_hash:
            scan.add(ack_seq, "the head the cloud acknowledged has changed (prefix rewritten)")
    return scan
