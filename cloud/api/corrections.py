"""`/corrections`: compensating transfers for an operator's mistake on a prepaid balance
(`cloud.operations.corrections`: a pending in the cloud chain, a `correction` command, posted when
the edge books it, voided when the edge refuses).

Who may: operations (`OPERATIONS`: admin, operator) book corrections, as themselves; one above
the approval amount (`[operations] approve_corrections_above_fen`) is held until a second user
of `PAYOUT` (admin, finance) approves or rejects it; staff read them. The same correction id —
or, without one, the same request — books once (200 with the first correction).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from pydantic import Field, StrictInt, StrictStr

from cloud.api.auth import allow
from cloud.api.common import CloudKey, DbSession, Now, Out, Owner, StoredTime, StrictBody, answers
from cloud.api.operation_lists import Reference
from cloud.api.operation_routes import add_decisions, add_reads, answer
from cloud.db.operations import Correction
from cloud.operations import corrections
from cloud.operations.receipts import Voucher
from cloud.operations.recharges import MAX_RECHARGE_FEN
from cloud.people.auth import OPERATIONS, PAYOUT, STAFF, Principal

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
    payment: str | None = Field(description="the recharge corrected, when it is one")
    reason: str
    operator: str
    approved_by: str | None = Field(description="the second user who approved or rejected it")
    status: str = Field(
        description="held (waits for approval), pending, posted (the edge booked it), failed "
        "or rejected"
    )
    pending_transfer: str
    edge_transfer: str
    command_id: str | None
    receipt: str | None
    created: StoredTime
    resolved: StoredTime | None


def _receipt(row: Correction) -> Voucher | None:
    """A correction's receipt prints once it is booked, not while it is held or rejected."""
    return None if row.command_id is None else corrections.voucher(row)


@router.post(
    "", response_model=CorrectionOut, status_code=status.HTTP_201_CREATED,
    summary="Correct a prepaid balance with a compensating transfer",
    responses={200: {"description": "the same correction again: the one already booked"},
               **answers(e404="unknown account or original",
                         e409="id reused with other content, or the recharge is not booked",
                         e422="beyond what the original allows, or a repeat of one")},
)  # fmt: skip
def create_correction(
    *,
    body: CorrectionIn,
    who: Annotated[Principal, allow(*OPERATIONS)],
    request: Request,
    response: Response,
    session: DbSession,
    key: CloudKey,
    now: Now,
) -> CorrectionOut:
    row, created = corrections.create(
        session, account=body.account, fen=body.fen, original=body.original,
        reason=body.reason, operator=who.user, correction=body.correction, key=key, now=now,
        approve_above=request.app.state.approve_above_fen,
    )  # fmt: skip
    return answer(CorrectionOut, row, created, who=who, session=session, now=now,
                  action="correction.create", target=f"account:{row.account}",
                  voucher=_receipt(row), response=response)  # fmt: skip


add_decisions(
    router, CorrectionOut, PAYOUT, param="correction",
    held="a held correction (a second user: finance or admin)",
    approve=corrections.approve, reject=corrections.reject, action="correction",
    target=lambda row: f"account:{row.account}", voucher=_receipt,
)  # fmt: skip
add_reads(router, Correction, CorrectionOut, STAFF, param="correction", noun="correction")
