"""`/corrections`: compensating transfers for an operator's mistake on a prepaid balance
(`cloud.operations.corrections`: a pending in the cloud chain, a `correction` command, posted when
the edge books it, voided when the edge refuses).

Who may: operations (`OPERATIONS`: admin, operator) book corrections, as themselves; staff
read them. The same correction id — or, without one, the same request — books once (200 with
the first correction).
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import Field, StrictInt, StrictStr
from sqlalchemy.orm import Session

from cloud.api.common import Out, Owner, StoredTime, StrictBody, answers
from cloud.api.operation_lists import Reference
from cloud.api.operation_routes import add_create, add_reads
from cloud.db.operations import Correction
from cloud.operations import corrections
from cloud.operations.recharges import MAX_RECHARGE_FEN
from cloud.people.auth import OPERATIONS, STAFF, Principal
from ledger.chain import NodeKey

router = APIRouter(prefix="/corrections", tags=["operations"])


class CorrectionIn(StrictBody):
    account: Owner
    fen: StrictInt = Field(
        ge=-MAX_RECHARGE_FEN, le=MAX_RECHARGE_FEN,
        description="signed fen, not 0: > 0 credits the account, < 0 takes back",
    )  # fmt: skip
    original: Reference = Field(description="the recharge's payment id or a transfer's hex id")
    reason: StrictStr = Field(
        min_length=corrections.MIN_REASON, max_length=corrections.MAX_REASON,
        pattern=r"^[^\x00-\x1f\x7f]+$",
    )  # fmt: skip
    correction: Reference | None = Field(
        None, description="the correction's id; derived from the request when absent"
    )


class CorrectionOut(Out):
    id: str
    account: str
    node: str
    shop: str
    fen: int
    original: str
    original_transfer: str = Field(description="hex id of the transfer corrected")
    reason: str
    operator: str
    status: str = Field(description="pending, posted (the edge booked it) or failed")
    pending_transfer: str
    edge_transfer: str
    command_id: str
    receipt: str | None
    created: StoredTime
    resolved: StoredTime | None


def _book(
    body: CorrectionIn, who: Principal, session: Session, key: NodeKey, now: dt.datetime
) -> tuple[Correction, bool]:
    return corrections.create(
        session, account=body.account, fen=body.fen, original=body.original,
        reason=body.reason, operator=who.user, correction=body.correction, key=key, now=now,
    )  # fmt: skip


add_create(
    router, "create_correction", CorrectionIn, CorrectionOut, OPERATIONS,
    summary="Correct a prepaid balance with a compensating transfer",
    again="the same correction again: the one already booked",
    refusals=answers(e404="unknown account or original", e409="id reused with other content"),
    book=_book, action="correction.create", target=lambda row: f"account:{row.account}",
    voucher=corrections.voucher,
)  # fmt: skip


add_reads(router, Correction, CorrectionOut, STAFF, param="correction", noun="correction")
