"""The books check a restored database must pass before anyone trusts the backup it came from
(`voltbook-cloud backup verify`, the restore drill):

1. **every chain verifies**: each node's stored entries and checkpoints, through the ledger's
   own verifier (`ledger.verify.verify_records`), with the node's registered key and its
   rotations (`cloud.chains.key_rotations`; the cloud's chain with the cloud's key from its
   key file, not from the database), up to the head the `concentrators` row holds;
2. **the books**: `cloud.reports.books.verify` — no transfer twice, payments credited once,
   balances summing to zero per unit and equal to the ledger, the deposits report's totals
   equal to the ledger's posts;
3. **the operator log**: its hash chain, held to the heads signed with the cloud's key
   (`cloud.people.oplog.verify`); only heads signed at or before the restored point count,
   since a database restored to an earlier moment cannot reach later heads.

`check_books` returns a `BooksCheck`: the counts and every problem as a sentence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.chains import key_rotations
from cloud.db.models import Checkpoint as CheckpointRow
from cloud.db.models import Concentrator, LedgerEntry
from cloud.keys import CLOUD_NODE
from cloud.people import oplog
from cloud.reports import books
from ledger.chain import Checkpoint, Entry
from ledger.encoding import body_version, decode_transfer
from ledger.errors import DecodeError
from ledger.export import Record
from ledger.signed import OplogHead, trusted
from ledger.verify import TrustedHead, verify_records


@dataclass(slots=True)
class BooksCheck:
    chains: int = 0
    entries: int = 0
    oplog_rows: int = 0
    heads: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "sound" if self.ok else f"{len(self.problems)} problem(s)"
        return (
            f"books {verdict}: {self.chains} chains, {self.entries} entries verified; operator "
            f"log {self.oplog_rows} rows held to {self.heads} signed head(s)"
        )


def heads_until(heads: Sequence[OplogHead], until: dt.datetime | None) -> list[OplogHead]:
    """The heads signed at or before `until` (all of them when `until` is None); a head whose
    time does not parse is kept, so the check names it."""
    if until is None:
        return list(heads)
    kept = []
    for head in heads:
        try:
            signed = dt.datetime.fromisoformat(head.time)
        except ValueError:
            kept.append(head)
            continue
        if signed.tzinfo is None or signed <= until:
            kept.append(head)
    return kept


def check_books(
    session: Session, cloud_key: Ed25519PublicKey, heads: Sequence[OplogHead] = ()
) -> BooksCheck:
    """Every check above over the database `session` reads."""
    result = BooksCheck()
    for node, public_hex, head_seq, head_hash in session.execute(
        select(Concentrator.node, Concentrator.public_key, Concentrator.head_seq,
               Concentrator.head_hash).order_by(Concentrator.node)
    ):  # fmt: skip
        key = cloud_key if node == CLOUD_NODE else _public_key(public_hex)
        problems, count = _chain(session, node, key, TrustedHead(head_seq, bytes(head_hash)))
        result.chains += 1
        result.entries += count
        result.problems += problems
    stray = session.scalars(
        select(LedgerEntry.node).where(LedgerEntry.node.not_in(select(Concentrator.node))).limit(1)
    ).first()
    if stray is not None:
        result.problems.append(f"chain {stray}: entries of a node the cloud does not know")
    result.problems += books.verify(session)
    verdict = oplog.verify(session, heads, trusted(cloud_key))
    result.oplog_rows, result.heads = verdict.rows, len(heads)
    if not verdict.ok:
        result.problems.append(f"operator log: {verdict.problem}")
    return result


def _public_key(raw_hex: str) -> Ed25519PublicKey | None:
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw_hex))
    except ValueError:
        return None


def _chain(
    session: Session, node: str, key: Ed25519PublicKey | None, head: TrustedHead
) -> tuple[list[str], int]:
    if key is None:
        return [f"chain {node}: its registered public key is not an Ed25519 key"], 0
    records: list[Record] = []
    entries = select(LedgerEntry.seq, LedgerEntry.prev_hash, LedgerEntry.hash, LedgerEntry.body)
    for seq, prev_hash, digest, body in session.execute(
        entries.where(LedgerEntry.node == node).order_by(LedgerEntry.seq)
    ):
        try:
            transfer = decode_transfer(bytes(body))
        except DecodeError as exc:
            return [f"chain {node}: entry {seq} does not decode ({exc})"], 0
        version = body_version(bytes(body))
        records.append(Entry(node, seq, bytes(prev_hash), bytes(digest), transfer, version))
    count = len(records)
    for row in session.scalars(
        select(CheckpointRow).where(CheckpointRow.node == node).order_by(CheckpointRow.seq)
    ):
        records.append(Checkpoint(node, row.seq, bytes(row.head), row.key_id, bytes(row.signature)))
    records.extend(key_rotations.of(session, node))
    if not count and head.seq == 0:
        return [], 0
    verdict = verify_records(records, [key], node=node, trusted=head)
    return [f"chain {node}: {finding}" for finding in verdict.findings], count
