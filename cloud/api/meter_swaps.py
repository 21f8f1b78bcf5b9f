"""`/meter-swaps`: replacing a meter (`cloud.operations.meter_swaps`), and importing the registers
an infrared handheld read from dead meters (`cloud.operations.handheld` documents the file format).

    POST /meter-swaps/ir-import  {source, csv: "<the handheld's export>"}
                              or {source, readings: [{address, read_at, energy_wh}, …]}
                              (what `voltbook-fw ir-import FILE` prints)
    POST /meter-swaps            {old, final_wh | ir_reading, new: {address, protocol,
                                  multiplier}, initial_wh}

    POST /meter-swaps/{id}/approve | reject   a held swap: a second user decides

Who may: `FIELD` (admin, operator, installer) import and swap; staff and installers read.
A final register below the last reading the cloud holds is refused (422); one past the
plausibility limit is held until a second user of `OPERATIONS` (admin, operator) overrides
(approves) or rejects it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter
from pydantic import Field, StrictInt, StrictStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import (
    DbSession,
    Instant,
    Limit,
    MeterAddress,
    Now,
    Offset,
    Out,
    Page,
    StoredTime,
    StrictBody,
    answers,
    page,
)
from cloud.api.operation_lists import Reference
from cloud.api.operation_routes import add_create, add_decisions, add_reads
from cloud.db.operations import IrReading, MeterSwap
from cloud.errors import Invalid
from cloud.operations import handheld, meter_swaps
from cloud.people import oplog
from cloud.people.auth import FIELD, OPERATIONS, READ_ALL, Principal
from ledger.chain import NodeKey
from ledger.units import MAX_AMOUNT

router = APIRouter(prefix="/meter-swaps", tags=["operations"])
Register = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT, description="Wh")]


class NewMeter(StrictBody):
    address: MeterAddress
    protocol: StrictStr = Field(pattern=meter_swaps.PROTOCOL.pattern, examples=["dlt645"])
    multiplier: StrictInt = Field(1, ge=1, le=meter_swaps.MAX_MULTIPLIER)


class MeterSwapIn(StrictBody):
    old: MeterAddress
    final_wh: Register | None = Field(None, description="the old meter's final register")
    ir_reading: StrictInt | None = Field(
        None, ge=1, le=MAX_AMOUNT, description="or: the id of an imported handheld reading"
    )
    new: NewMeter
    initial_wh: Register
    swap: Reference | None = Field(None, description="the swap's id; derived when absent")


class MeterSwapOut(Out):
    id: str
    node: str
    account: str
    shop: str
    old: str
    final_wh: int
    ir_reading: int | None
    new_address: str
    protocol: str
    multiplier: int
    initial_wh: int
    status: str = Field(
        description="held (past the plausibility limit), requested, applied, failed or rejected"
    )
    limit_wh: int | None = Field(description="the highest plausible final register, Wh")
    command_id: str | None
    operator: str
    approved_by: str | None = Field(description="the second user who overrode or rejected it")
    receipt: str | None
    created: StoredTime
    resolved: StoredTime | None


class IrRow(StrictBody):
    address: MeterAddress
    read_at: Annotated[Instant, Field(strict=False, description="ISO 8601 with offset")]
    energy_wh: Register


class IrImportIn(StrictBody):
    source: StrictStr = Field(
        min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
        description="where it came from: the handheld and file name",
    )  # fmt: skip
    csv: StrictStr | None = Field(None, max_length=1_000_000, description="the export as is")
    readings: list[IrRow] | None = Field(None, max_length=handheld.MAX_ROWS)


class IrReadingOut(Out):
    id: int
    address: str
    read_at: StoredTime
    energy_wh: int
    source: str
    operator: str
    imported: StoredTime


class IrImportOut(Out):
    readings: list[IrReadingOut]
    new: int = Field(description="how many were not imported before")


@router.post(
    "/ir-import",
    response_model=IrImportOut,
    summary="Import final registers read with an infrared handheld",
    responses=answers(e409="a meter and time imported before with another register"),
)
def import_ir(
    body: IrImportIn,
    who: Annotated[Principal, allow(*FIELD)],
    session: DbSession,
    now: Now,
) -> IrImportOut:
    if (body.csv is None) == (body.readings is None):
        raise Invalid("send the handheld's export as csv, or the parsed readings, not both")
    if body.csv is not None:
        try:
            registers = handheld.parse(body.csv)
        except handheld.HandheldError as exc:
            raise Invalid(f"{body.source}: {exc}") from exc
    else:
        assert body.readings is not None
        registers = [handheld.IrRegister(r.address, r.read_at, r.energy_wh) for r in body.readings]
        if not registers:
            raise Invalid("no readings")
    rows, new = meter_swaps.import_ir(
        session, registers, source=body.source, operator=who.user, now=now
    )
    out = IrImportOut(readings=[IrReadingOut.model_validate(r) for r in rows], new=new)
    if new:
        oplog.record(session, who.actor, "ir.import", f"source:{body.source}", None,
                     {"readings": [r.id for r in rows], "new": new}, now)  # fmt: skip
    return out


@router.get("/ir-readings", response_model=Page[IrReadingOut], summary="Imported handheld readings")
def list_ir_readings(
    who: Annotated[Principal, allow(*READ_ALL)],
    session: DbSession,
    address: MeterAddress | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(IrReading).order_by(IrReading.read_at, IrReading.id)
    if address is not None:
        query = query.where(IrReading.address == address)
    return page(session, query, limit, offset,
                lambda rows: [IrReadingOut.model_validate(r) for r in rows])  # fmt: skip


def _book(
    body: MeterSwapIn, who: Principal, session: Session, key: NodeKey, now: dt.datetime
) -> tuple[MeterSwap, bool]:
    return meter_swaps.request(
        session, old=body.old, final_wh=body.final_wh, ir_reading=body.ir_reading,
        new_address=body.new.address, protocol=body.new.protocol,
        multiplier=body.new.multiplier, initial_wh=body.initial_wh, operator=who.user,
        swap=body.swap, key=key, now=now,
    )  # fmt: skip


add_create(
    router, "request_swap", MeterSwapIn, MeterSwapOut, FIELD,
    summary="Replace a meter: the old one's final register, the new one's first",
    again="the same swap again",
    refusals=answers(e404="unknown meter or IR reading", e409="new meter exists, or a swap open"),
    book=_book, action="meter_swap.request", target=lambda row: f"meter:{row.old}",
    voucher=meter_swaps.voucher,
)  # fmt: skip


add_decisions(
    router, MeterSwapOut, OPERATIONS, param="swap",
    held="a held swap (a second user: admin or operator)", approve_as="override",
    approve=meter_swaps.approve, reject=meter_swaps.reject, action="meter_swap",
    target=lambda row: f"meter:{row.old}", voucher=meter_swaps.voucher,
)  # fmt: skip
add_reads(router, MeterSwap, MeterSwapOut, READ_ALL, param="swap", noun="meter swap")
