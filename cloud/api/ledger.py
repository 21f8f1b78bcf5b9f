"""`/ledger`: every verified chain entry the cloud holds (the edges' and its own `cloud` chain),
in the order they were stored. Paged by keyset (`after_id`), because an auditor walks the
whole ledger and an offset would slow down with every page.

Who may: staff (`STAFF`, the auditor above all) read every chain; a merchant reads the entries
that touch its own pockets (naming another account is refused, 403).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from cloud.api.auth import allow
from cloud.api.common import MAX_OFFSET, MAX_PAGE, DbSession, Out, StoredTime
from cloud.db import models
from cloud.people.auth import STAFF, Principal, Role
from ledger.accounts import Pocket
from ledger.transfers import Code

router = APIRouter(prefix="/ledger", tags=["ledger"])


class EntryOut(Out):
    id: int = Field(description="the cloud's storage order; page with after_id")
    node: str = Field(description="the chain: a concentrator's node id, or cloud")
    seq: int
    transfer_id: str = Field(description="128-bit transfer id, hex")
    kind: str = Field(description="single, pending, post or void")
    pending_id: str | None
    code: str
    debit: str
    credit: str
    amount: int
    unit: str = Field(description="Wh or fen")
    refs: dict[str, Any]
    time: StoredTime = Field(description="the wall time the node believed")
    hash: str = Field(description="entry hash, hex")
    prev_hash: str


class LedgerPage(BaseModel):
    items: list[EntryOut]
    next_after_id: int | None = Field(description="pass as after_id for the next page; null: end")


@router.get("", response_model=LedgerPage, summary="Ledger entries, in storage order")
def list_entries(
    *,
    who: Annotated[Principal, allow(*STAFF, Role.MERCHANT)],
    session: DbSession,
    node: Annotated[str | None, Query(description="one chain")] = None,
    account: Annotated[
        str | None,
        Query(description="an account id (A0001:prepaid) or a merchant (A0001: all pockets)"),
    ] = None,
    code: Annotated[Code | None, Query(description="why the transfers happened")] = None,
    after_id: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="entries after this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> LedgerPage:
    entry = models.LedgerEntry
    # The columns the answer shows (not `body`, the canonical bytes), not ORM objects.
    query = select(
        entry.id, entry.node, entry.seq, entry.transfer_id, entry.kind, entry.pending_id,
        entry.code, entry.debit, entry.credit, entry.amount, entry.unit, entry.refs, entry.time,
        entry.hash, entry.prev_hash,
    ).where(entry.id > after_id)  # fmt: skip
    if node is not None:
        query = query.where(entry.node == node)
    if who.role is Role.MERCHANT:
        if account is not None:
            who.require_account(account.split(":")[0])
        account = account or who.account
    if account is not None:
        ids = [account] if ":" in account else [f"{account}:{p.value}" for p in Pocket]
        query = query.where(or_(entry.debit.in_(ids), entry.credit.in_(ids)))
    if code is not None:
        query = query.where(entry.code == code.value)
    rows = session.execute(query.order_by(entry.id).limit(limit + 1)).all()
    items = [
        EntryOut(
            id=e.id,
            node=e.node,
            seq=e.seq,
            transfer_id=e.transfer_id,
            kind=e.kind,
            pending_id=e.pending_id,
            code=e.code,
            debit=e.debit,
            credit=e.credit,
            amount=e.amount,
            unit=e.unit,
            refs=e.refs,
            time=e.time,
            hash=e.hash.hex(),
            prev_hash=e.prev_hash.hex(),
        )
        for e in rows[:limit]
    ]
    more = len(rows) > limit
    return LedgerPage(items=items, next_after_id=items[-1].id if more else None)
