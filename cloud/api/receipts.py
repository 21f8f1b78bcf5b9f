"""`/receipts`: what was printed for a recharge, correction, refund payout or meter swap
(`cloud.operations.receipts`), with where it stands now (booked, pending or void, and the
balance after it, `cloud.operations.receipt_status`): JSON with every field, or `?format=txt`
for the desk's printer, or `?format=pdf`; `lang=en` prints it in English.

    GET  /receipts/2026-000042             → {number, state, site, merchant, account, shop,
                                              fen, yuan, capital, …, balance_after_fen, print}
    GET  /receipts/2026-000042?format=txt  → 收据 … 金额: ¥50.00 … 入账后余额: ¥1302.00
    GET  /receipts/2026-000042?format=pdf&lang=en
    POST /receipts/recharges/{payment}     → the recharge's receipt (issued on first call)

Who may: staff read; the money desk issues a recharge's receipt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import DbSession, Limit, Now, Offset, Out, Page, answers, page
from cloud.api.operation_lists import ListFilters, ReferencePath, apply
from cloud.db.operations import Receipt
from cloud.operations import receipt_print, receipts, recharges, records
from cloud.people.auth import MONEY_DESK, STAFF, Principal

router = APIRouter(prefix="/receipts", tags=["operations"])
Kind = Literal["recharge", "correction", "refund", "meter_swap"]


class ReceiptOut(Out):
    number: str = Field(description="YYYY-NNNNNN, contiguous per year")
    kind: str = Field(description="recharge, correction, refund or meter_swap")
    ref: str = Field(description="the payment, correction, refund or swap id, whole")
    state: Literal["pending", "booked", "void"] = Field(
        description="pending until the concentrator books it; void when it refused it"
    )
    void_reason: str | None = Field(description="why it is void (the concentrator's reason)")
    site: str = Field(description="the registry's site of the account's shop, when issued")
    merchant: str = Field(description="the account's merchant, when issued")
    account: str
    shop: str
    fen: int = Field(description="the amount, fen (signed for a correction; a swap's final bill)")
    yuan: str = Field(description="the amount in yuan, e.g. 50.00")
    capital: str = Field(description="the amount in capital characters (人民币大写)")
    method: str
    operator: str
    time: str = Field(description="issued, in the site's zone")
    transfer: str = Field(description="the ledger transfer (or command) it vouches for, hex")
    booked: str | None = Field(description="when the concentrator booked it, in the site's zone")
    balance_after_fen: int | None = Field(
        description="available prepaid fen just after it; none until it is booked"
    )
    energy_wh: int | None = Field(description="a swap: the energy its final bill covers, Wh")
    bill_wh: dict[str, int] = Field(description="a swap: Wh per tariff period (peak, …)")
    detail: dict[str, Any]
    print: bool = Field(description="whether the receipt's site prints receipts")


def _outs(session: Session) -> Callable[[Sequence[Receipt]], list[ReceiptOut]]:
    return lambda rows: [ReceiptOut.model_validate(receipt_print.view(session, r)) for r in rows]


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
    return page(session, query, limit, offset, _outs(session))


@router.get(
    "/{number}",
    response_model=ReceiptOut,
    summary="One receipt, as JSON, printable text or PDF",
    responses={
        200: {
            "content": {"text/plain": {}, receipt_print.PDF_MEDIA_TYPE: {}},
            "description": "JSON, or text with format=txt, or a PDF with format=pdf",
        },
        **answers(e404="no such receipt"),
    },
)
def get_receipt(
    number: Annotated[str, Path(pattern=r"^\d{4}-\d{6,9}$", examples=["2026-000001"])],
    who: Annotated[Principal, allow(*STAFF)],
    session: DbSession,
    format: Annotated[Literal["json", "txt", "pdf"], Query()] = "json",
    lang: Annotated[receipt_print.Lang, Query(description="zh (default) or en")] = "zh",
) -> Any:
    receipt = receipts.get(session, number)
    if format == "txt":
        body = receipt_print.text(session, receipt, lang)
        return PlainTextResponse(body, media_type="text/plain; charset=utf-8")
    if format == "pdf":
        document = receipt_print.pdf(session, receipt, lang)
        disposition = f'inline; filename="receipt-{number}.pdf"'
        return Response(document, media_type=receipt_print.PDF_MEDIA_TYPE,
                        headers={"Content-Disposition": disposition})  # fmt: skip
    return ReceiptOut.model_validate(receipt_print.view(session, receipt))


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
    return ReceiptOut.model_validate(receipt_print.view(session, receipt))
