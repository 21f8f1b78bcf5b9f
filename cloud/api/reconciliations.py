"""`/payments/reconciliations`: the daily reconciliation of online payments against the
providers' bills (`cloud.payments.reconcile`), for finance.

    GET  /payments/reconciliations                   the days, newest first (staff)
    GET  /payments/reconciliations/{day}             one day: its differences and totals;
                                                     `format=xlsx` or `pdf` (`lang` zh | en)
    POST /payments/reconciliations/{day}/sign-off    finance accepts the day (a note is
                                                     required when it has differences); logged
                                                     in the operator log; once signed off the
                                                     day is not made again

The days are made by `voltbook-cloud payments reconcile --day D` and by the server's daily run.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field
from sqlalchemy import select

from cloud.api.auth import allow
from cloud.api.common import (
    Day,
    DbSession,
    Limit,
    Now,
    Offset,
    Out,
    Page,
    StoredTime,
    StrictBody,
    answers,
    page,
)
from cloud.db.reconciliations import PaymentReconciliation
from cloud.payments import reconcile, reconcile_report
from cloud.people import oplog
from cloud.people.auth import STAFF, Principal, Role
from cloud.reports import excel, pdf

router = APIRouter(prefix="/payments/reconciliations", tags=["payments"])
DayPath = Annotated[Day, Path(description="the day, Beijing time (YYYY-MM-DD)")]
Format = Annotated[Literal["json", "xlsx", "pdf"], Query(alias="format")]
Lang = Annotated[Literal["zh", "en"], Query(description="a PDF's language: zh or en")]


class DifferenceOut(Out):
    provider: str
    kind: str = Field(description=", ".join(reconcile.KINDS))
    out_trade_no: str
    out_refund_no: str
    ours_fen: int | None
    provider_fen: int | None
    detail: str


class ReconciliationOut(Out):
    day: Day
    made: StoredTime
    runs: int
    state: str = Field(description="clean or differences")
    rows: list[DifferenceOut]
    totals: dict[str, dict[str, int]] = Field(
        description="per provider: the bill's count, paid and refunded fen and ours"
    )
    signed_off_by: str | None
    signed_off_at: StoredTime | None
    note: str


class SignOffIn(StrictBody):
    note: str = Field("", max_length=2000, description="what was done about the differences")


@router.get("", response_model=Page[ReconciliationOut], summary="The reconciled days")
def list_reconciliations(
    who: Annotated[Principal, allow(*STAFF)],
    session: DbSession,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(PaymentReconciliation).order_by(PaymentReconciliation.day.desc())
    return page(
        session,
        query,
        limit,
        offset,
        lambda rows: [ReconciliationOut.model_validate(r) for r in rows],
    )


@router.get(
    "/{day}",
    response_model=ReconciliationOut,
    summary="One day's reconciliation (JSON, Excel or PDF)",
    responses={
        **answers(e404="the day is not reconciled"),
        200: {"content": {excel.MEDIA_TYPE: {}, pdf.MEDIA_TYPE: {}}},
    },
)
def get_reconciliation(
    day: DayPath,
    *,
    who: Annotated[Principal, allow(*STAFF)],
    session: DbSession,
    now: Now,
    form: Format = "json",
    lang: Lang = "zh",
) -> Any:
    row = reconcile.get(session, day)
    name = f"reconciliation-{day.isoformat()}"
    if form == "xlsx":
        return Response(
            reconcile_report.workbook(row),
            media_type=excel.MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    if form == "pdf":
        return Response(
            reconcile_report.document(row, generated=now, lang=lang),
            media_type=pdf.MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
        )
    return ReconciliationOut.model_validate(row)


@router.post(
    "/{day}/sign-off",
    response_model=ReconciliationOut,
    summary="Finance signs the day off",
    responses=answers(
        e404="the day is not reconciled", e422="differences and no note saying what was done"
    ),
)
def sign_off_reconciliation(
    day: DayPath,
    body: SignOffIn,
    who: Annotated[Principal, allow(Role.FINANCE)],
    session: DbSession,
    now: Now,
) -> ReconciliationOut:
    row, changed = reconcile.sign_off(session, day, user=who.user, note=body.note, now=now)
    out = ReconciliationOut.model_validate(row)
    if changed:
        oplog.record(
            session,
            who.actor,
            "reconciliation.sign_off",
            f"day:{day.isoformat()}",
            None,
            {
                "state": row.state,
                "differences": len(row.rows),
                "note": row.note,
                "totals": row.totals,
            },
            now,
        )
    return out
