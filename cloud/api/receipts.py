"""`/receipts`: what was printed for a recharge, correction, refund payout or meter swap
(`cloud.operations.receipts`): JSON with every printed field, or `?format=txt` for the printer.

    GET  /receipts/2026-000042             → {number, account, shop, fen, yuan, capital, …,
                                              print: true}
    GET  /receipts/2026-000042?format=txt  → 收据 … 金额: ¥50.00 …
    POST /receipts/recharges/{payment}     → the recharge's receipt (issued on first call)

Who may: staff read; the money desk issues a recharge's receipt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import Field
from sqlalchemy import select

from cloud.api.auth import allow
from cloud.api.common import DbSession, Limit, Now, Offset, Out, Page, answers, page
from cloud.api.operation_lists import ListFilters, ReferencePath, apply
from cloud.db.operations import Receipt
from cloud.operations import receipts, recharges, records
from cloud.people.auth import MONEY_DESK, STAFF, Principal

router = APIRouter(prefix="/receipts", tags=["operations"])
Kind = Literal["recharge", "correction", "refund", "meter_swap"]


class ReceiptOut(Out):
    number: str = Field(description="YYYY-NNNNNN, contiguous per year")
    kind: str = Field(description="recharge, correction, refund or meter_swap")
    ref: str = Field(description="the payment, correction, refund or swap id")
    account: str
    shop: str
    fen: int = Field(description="the amount, fen (signed for a correction, 0 for a swap)")
    yuan: str = Field(description="the amount in yuan, e.g. 50.00")
    capital: str = Field(description="the amount in capital characters (人民币大写)")
    method: str
    operator: str
    time: str = Field(description="in the site's zone")
    transfer: str = Field(description="the ledger transfer (or command) it vouches for, hex")
    balance_fen: int | None = Field(description="prepaid balance the cloud held then")
    detail: dict[str, Any]
    print: bool = Field(description="whether this site prints receipts")


def _out(rows: Sequence[Receipt]) -> list[ReceiptOut]:
    return [ReceiptOut.model_validate(receipts.view(r)) for r in rows]


@router.get("", response_model=Page[ReceiptOut], summary="List receipts")
def list_receipts(
    *,
    who: Annotated[Principal, allow(*STAFF)],
    session: DbSession,
    filters: ListFilters,
    kind: Annotated[Kind | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(Receipt)
    if kind is not None:
        query = query.where(Receipt.kind == kind)
    query = apply(query, Receipt, filters, time=Receipt.time, key=Receipt.number)
    return page(session, query, limit, offset, _out)


@router.get(
    "/{number}",
    response_model=ReceiptOut,
    summary="One receipt, as JSON or printable text",
    responses={
        200: {"content": {"text/plain": {}}, "description": "JSON, or text with format=txt"},
        **answers(e404="no such receipt"),
    },
)
def get_receipt(
    number: Annotated[str, Path(pattern=r"^\d{4}-\d{6,9}$", examples=["2026-000001"])],
    who: Annotated[Principal, allow(*STAFF)],
    session: DbSession,
    format: Annotated[Literal["json", "txt"], Query()] = "json",
) -> Any:
    receipt = receipts.get(session, number)
    if format == "txt":
        return PlainTextResponse(receipts.text(receipt), media_type="text/plain; charset=utf-8")
    return ReceiptOut.model_validate(receipts.view(receipt))


@router.post(
    "/recharges/{payment}",
    response_model=ReceiptOut,
    status_code=status.HTTP_201_CREATED,
    summary="The receipt of a recharge (issued on the first call)",
    responses={200: {"description": "issued before"}, **answers(e404="no such recharge")},
)
def recharge_receipt(
    payment: ReferencePath,
    who: Annotated[Principal, allow(*MONEY_DESK)],
    response: Response,
    session: DbSession,
    now: Now,
) -> ReceiptOut:
    before = receipts.find(session, "recharge", payment)
    recharge = recharges.get(session, payment)

    def issued(receipt: Receipt | None) -> dict[str, object]:
        assert receipt is not None  # a voucher always has its receipt
        return {"number": receipt.number, "kind": "recharge", "ref": payment}

    receipt = records.record(
        session, who.actor, "receipt.issue", f"account:{recharge.account}", now,
        new=before is None, voucher=recharges.voucher(recharge), after=issued,
    )  # fmt: skip
    assert receipt is not None
    if before is not None:
        response.status_code = status.HTTP_200_OK
    return ReceiptOut.model_validate(receipts.view(receipt))
