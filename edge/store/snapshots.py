"""Signed balance snapshots in the store: where a boot starts, and the anchor pruning leaves.

A snapshot (`ledger.snapshot`) is the book at one head of the chain, signed with the node key.
The store keeps at most two: the **anchor** (`meta.anchor`), where the retained chain starts
once acknowledged entries were pruned, and the **newest**, taken by the runtime every
`snapshot_interval`. Boot starts from the newest that checks and replays only the entries after
it; the full check (`Store.open(..., full_check=True)`, `voltbook-edge ledger verify`) starts
from the anchor and replays everything retained, comparing the balances at every snapshot.

Never trusted unchecked: a snapshot is used only when its signature verifies with the node's
key for its seq (`ledger.key_rotation.KeySchedule`), its body is canonical, and its (node, seq,
head) are its row's and its head is the chain's entry at that seq. A newest snapshot that
fails any of these makes the boot fall back to the full check from the anchor; an anchor that
fails makes the store refuse to open (its history before the anchor lives only in the cloud).
"""

from __future__ import annotations

import logging
import sqlite3
import zlib
from dataclasses import dataclass
from pathlib import Path

from edge.store.errors import CorruptStore, StoreUsageError
from edge.store.integrity import parse_head
from ledger.book import BookState
from ledger.encoding import GENESIS_HASH
from ledger.errors import DecodeError
from ledger.key_rotation import KeySchedule
from ledger.snapshot import BalanceSnapshot, SignedSnapshot

log = logging.getLogger("edge.store")

MAX_BODY = 64 * 1024 * 1024  # a snapshot of 100 000 accounts is a few MB; more is damage


@dataclass(frozen=True, slots=True)
class Start:
    """Where the boot scan starts: after `seq` (whose hash is `head`), from `state` (None:
    an empty book at genesis). `snapshot` says whether a newest snapshot was used."""

    seq: int
    head: bytes
    state: BookState | None
    snapshot: bool = False


GENESIS = Start(0, GENESIS_HASH, None)


def pack(signed: SignedSnapshot) -> bytes:
    return zlib.compress(signed.body, 6)


def unpack(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    body = inflater.decompress(data, MAX_BODY)
    if inflater.unconsumed_tail or not inflater.eof:
        raise DecodeError("the snapshot body is truncated or too large")
    return body


def _checked(
    conn: sqlite3.Connection,
    node: str,
    row: tuple[int, bytes, bytes, str, bytes],
    keys: KeySchedule,
) -> BalanceSnapshot | str:
    """The snapshot of a `snapshots` row if it checks, else why not."""
    seq, head, packed, key_id, signature = row
    try:
        signed = SignedSnapshot(unpack(bytes(packed)), key_id, bytes(signature))
    except (DecodeError, zlib.error) as exc:
        return f"does not unpack ({exc})"
    public_key = keys.key_for(key_id, seq)
    if public_key is None:
        return keys.why_not(key_id, seq)
    if not signed.verify(public_key):
        return f"signature by {key_id} does not verify with the node's key"
    try:
        snapshot = signed.snapshot
    except DecodeError as exc:
        return f"is not a snapshot ({exc})"
    if (snapshot.node, snapshot.seq, snapshot.head) != (node, seq, bytes(head)):
        return "does not match its row's node, seq or head"
    if seq == anchor_of(conn)[0]:
        return snapshot  # its entry was pruned; the recorded anchor is checked by the caller
    entry = conn.execute("SELECT hash FROM ledger WHERE seq = ?", (seq,)).fetchone()
    if entry is None:
        return "has no entry at its seq (rows were deleted)"
    if bytes(entry[0]) != snapshot.head:
        return "head is not the chain's entry at its seq"
    return snapshot


def _rows(conn: sqlite3.Connection, above: int) -> list[tuple[int, bytes, bytes, str, bytes]]:
    return conn.execute(
        "SELECT seq, head, body, key_id, signature FROM snapshots WHERE seq >= ? ORDER BY seq",
        (above,),
    ).fetchall()


def anchor_of(conn: sqlite3.Connection) -> tuple[int, bytes]:
    row = conn.execute("SELECT value FROM meta WHERE key = 'anchor'").fetchone()
    return parse_head(None if row is None else row[0])


def boot_start(
    conn: sqlite3.Connection,
    path: Path,
    node: str,
    keys: KeySchedule | None,
    *,
    full: bool,
) -> tuple[Start, dict[int, BookState]]:
    """Where to start, and the checked snapshots after it (seq → state) that the replay must
    meet. Raises `CorruptStore` when the anchor does not check, `StoreUsageError` when a
    pruned store is opened without the key that checks it."""
    anchor_seq, anchor_hash = anchor_of(conn)
    rows = _rows(conn, anchor_seq)
    if keys is None:
        if anchor_seq:
            raise StoreUsageError(
                f"store {path} was pruned up to seq {anchor_seq} (the cloud holds that part): "
                "opening it checks the signed balance snapshot there and needs the node's "
                "public key"
            )
        return GENESIS, {}
    checked = {row[0]: _checked(conn, node, row, keys) for row in rows}
    start = GENESIS
    if anchor_seq:
        anchor: BalanceSnapshot | str = checked.pop(anchor_seq, "is missing")
        if isinstance(anchor, str) or anchor.head != anchor_hash:
            why = anchor if isinstance(anchor, str) else "head is not the recorded anchor's"
            raise CorruptStore(
                path,
                anchor_seq,
                f"the balance snapshot at the pruned anchor {why}; the entries before it are "
                "only in the cloud's copy",
            )
        start = Start(anchor_seq, anchor_hash, anchor.state)
    good = {seq: s for seq, s in checked.items() if not isinstance(s, str)}
    for seq, found in checked.items():
        if isinstance(found, str):
            log.warning("store %s: the balance snapshot at seq %d %s: not used", path, seq, found)
    if not full and checked:
        newest = max(checked)
        chosen = checked[newest]
        if isinstance(chosen, BalanceSnapshot):
            return Start(newest, chosen.head, chosen.state, snapshot=True), {}
        log.warning("store %s: booting with the full check from seq %d", path, start.seq)
    return start, {seq: s.state for seq, s in good.items()}
