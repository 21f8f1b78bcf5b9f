"""The cloud's own chain (node `cloud`): money that arrives at the cloud (payments, and their
posting once the edge has credited the merchant) is booked here, hashed and signed exactly like
an edge's chain, and stored in `ledger_entries` / `checkpoints` next to them.

The chain's head lives in the `concentrators` row of node `cloud` (its public key is the
cloud's). `append` locks that row, so concurrent appends from the API and the ingest workers
queue up and the chain stays contiguous; it works inside the caller's transaction, so the entry
commits together with whatever caused it (a recharge row, an edge batch).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from cloud.chains import projection
from cloud.chains.locks import lock
from cloud.chains.projection import Appended, entry_row, hex_id
from cloud.db.bulk import insert_entries
from cloud.db.models import Checkpoint, Concentrator, LedgerEntry
from cloud.db.sql import upsert
from cloud.errors import Conflict, NotFound
from cloud.keys import CLOUD_NODE
from ledger.accounts import AccountId, unit_of
from ledger.chain import Chain, Entry, NodeKey
from ledger.encoding import GENESIS_HASH, encode_transfer
from ledger.transfers import Code, Kind, RefValue, TimeSource, Transfer

log = logging.getLogger(__name__)


def ensure_cloud_node(session: Session, key: NodeKey, now: dt.datetime) -> None:
    """Create the `cloud` row if missing (race-free), and record the current public key."""
    raw = key.public_key.public_bytes_raw().hex()
    statement = upsert(session, Concentrator.__table__).values(
        node=CLOUD_NODE,
        name="Voltbook cloud",
        public_key=raw,
        key_id=key.key_id,
        status="active",
        quarantine_reason="",
        online=False,
        head_seq=0,
        head_hash=GENESIS_HASH,
        upto=0,
        commands_applied=0,
        next_command_seq=1,
        created=now,
    )
    session.execute(statement.on_conflict_do_nothing(index_elements=["node"]))
    session.execute(
        update(Concentrator)
        .where(Concentrator.node == CLOUD_NODE, Concentrator.key_id != key.key_id)
        .values(public_key=raw, key_id=key.key_id)
    )


def append(
    session: Session,
    transfers: Sequence[Transfer],
    *,
    key: NodeKey,
    now: dt.datetime,
    project: bool = True,
) -> list[Entry]:
    """Append `transfers` to the cloud chain and sign the new head; returns the new entries.

    A transfer whose id is already in the chain with the same content is skipped (idempotent);
    with other content it raises Conflict. `project=False` leaves `balances` to the caller (the
    ingest projects an edge batch and the cloud's entries in one go).
    """
    try:
        head = lock(session, CLOUD_NODE)
    except NotFound:
        ensure_cloud_node(session, key, now)
        head = lock(session, CLOUD_NODE)
    fresh = _not_yet_in_chain(session, transfers)
    if not fresh:
        return []
    chain = Chain(CLOUD_NODE, head.head_seq, head.head_hash)
    entries = [chain.append(t) for t in fresh]
    insert_entries(
        session,
        [
            entry_row(CLOUD_NODE, e.seq, e.prev_hash, e.hash, encode_transfer(e.transfer),
                      e.transfer, now)
            for e in entries
        ],
    )  # fmt: skip
    checkpoint = chain.checkpoint(key)
    session.execute(
        insert(Checkpoint).values(
            node=CLOUD_NODE,
            seq=checkpoint.seq,
            head=checkpoint.head,
            key_id=checkpoint.key_id,
            signature=checkpoint.signature,
        )
    )
    head.head_seq, head.head_hash, head.last_seen = chain.seq, chain.head, now
    if project:
        projection.project(session, [appended(entries)])
    log.info("cloud chain: appended %d..%d", entries[0].seq, entries[-1].seq)
    return entries


def appended(entries: Sequence[Entry]) -> Appended:
    return Appended(CLOUD_NODE, entries[0].seq, entries[-1].seq, [e.transfer for e in entries])


def _not_yet_in_chain(session: Session, transfers: Sequence[Transfer]) -> list[Transfer]:
    ids = [hex_id(t.id) for t in transfers]
    if len(set(ids)) != len(ids):
        raise Conflict("the same transfer id twice in one append")
    rows = session.execute(
        select(LedgerEntry.transfer_id, LedgerEntry.body).where(
            LedgerEntry.node == CLOUD_NODE, LedgerEntry.transfer_id.in_(ids)
        )
    )
    stored = {transfer_id: body for transfer_id, body in rows}
    fresh = []
    for transfer, transfer_id in zip(transfers, ids, strict=True):
        body = stored.get(transfer_id)
        if body is None:
            fresh.append(transfer)
        elif bytes(body) != encode_transfer(transfer):
            raise Conflict(f"transfer {transfer_id} is in the cloud chain with other content")
    return fresh


def cloud_transfer(  # noqa: PLR0917 (the fields of a cloud transfer)
    transfer_id: int,
    debit: AccountId,
    credit: AccountId,
    amount: int,
    code: Code,
    now: dt.datetime,
    *,
    kind: Kind = Kind.SINGLE,
    pending_id: int | None = None,
    refs: Mapping[str, RefValue] | None = None,
) -> Transfer:
    return Transfer(
        id=transfer_id,
        debit=debit,
        credit=credit,
        amount=amount,
        unit=unit_of(debit),
        code=code,
        time=now.isoformat(),
        time_source=TimeSource.NTP,
        kind=kind,
        pending_id=pending_id,
        refs=dict(refs or {}),
    )
