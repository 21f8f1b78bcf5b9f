"""Small readers for the cloud tests: open an ack, count rows, export a stored chain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import models
from ledger.book import Balance
from ledger.chain import Checkpoint, Entry, NodeKey
from ledger.encoding import decode_transfer
from ledger.signed import ACK_TAG, open_signed, trusted
from ledger.wire import Ack


def open_ack(payload: bytes, key: NodeKey) -> Ack:
    return Ack.from_fields(open_signed(ACK_TAG, payload, trusted(key.public_key)))


def count(sessions: sessionmaker[Session], model: Any, *where: Any) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def stored_chain(sessions: sessionmaker[Session], node: str) -> list[Entry]:
    with sessions() as session:
        rows = session.scalars(
            select(models.LedgerEntry)
            .where(models.LedgerEntry.node == node)
            .order_by(models.LedgerEntry.seq)
        ).all()
        return [
            Entry(r.node, r.seq, bytes(r.prev_hash), bytes(r.hash), decode_transfer(bytes(r.body)))
            for r in rows
        ]


def stored_checkpoints(sessions: sessionmaker[Session], node: str) -> list[Checkpoint]:
    with sessions() as session:
        rows = session.scalars(
            select(models.Checkpoint)
            .where(models.Checkpoint.node == node)
            .order_by(models.Checkpoint.seq)
        ).all()
        return [
            Checkpoint(r.node, r.seq, bytes(r.head), r.key_id, bytes(r.signature)) for r in rows
        ]


def balances(sessions: sessionmaker[Session]) -> dict[str, Balance]:
    with sessions() as session:
        return {
            b.account: Balance(b.debits_pending, b.debits_posted, b.credits_pending,
                               b.credits_posted)
            for b in session.scalars(select(models.Balance))
        }  # fmt: skip


def node_row(sessions: sessionmaker[Session], node: str) -> models.Concentrator:
    with sessions() as session:
        row = session.get(models.Concentrator, node)
        assert row is not None
        session.expunge(row)
        return row
