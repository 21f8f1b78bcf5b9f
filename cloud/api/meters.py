"""`/meters` and `/readings`: the meters the concentrators report and what they uploaded.

Who may: staff and installers (`READ_ALL`) see every meter; a merchant sees the meters of its
own account and their readings (asking for another account is refused, 403). A merchant's
readings are those of the meters its account holds now.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy import Row, exists, select

from cloud.api.auth import allow
from cloud.api.common import (
    DbSession,
    Instant,
    Limit,
    Offset,
    Out,
    Page,
    StoredTime,
    page,
    row_page,
    utc,
)
from cloud.db import models
from cloud.errors import Forbidden
from cloud.people.auth import READ_ALL, Principal, Role

router = APIRouter(tags=["meters"])

RELAY = {1: "closed", 0: "open"}
Relay = Literal["closed", "open"] | None
Reader = Annotated[Principal, allow(*READ_ALL, Role.MERCHANT)]


class MeterOut(Out):
    node: str
    address: str
    account: str
    protocol: str
    relay: Relay = Field(description="as last read: closed (power on), open, or unknown")
    energy_wh: int | None = Field(description="the last energy register read, Wh")
    last_reading: StoredTime | None


class ReadingOut(Out):
    node: str
    meter: str
    time: StoredTime
    energy_wh: int | None
    tariff_wh: list[int] | None = Field(description="sharp, peak, flat, valley registers, Wh")
    voltage: float | None
    current: float | None
    power: float | None
    pf: float | None
    relay: Relay
    status: str | None


def _meters(rows: Sequence[models.MeterState]) -> list[MeterOut]:
    return [
        MeterOut(
            node=m.node,
            address=m.address,
            account=m.account,
            protocol=m.protocol,
            relay=RELAY.get(m.relay) if m.relay is not None else None,  # type: ignore[arg-type]
            energy_wh=m.energy_wh,
            last_reading=m.last_reading,
        )
        for m in rows
    ]


def _readings(rows: Sequence[Row[Any]]) -> list[ReadingOut]:
    return [
        ReadingOut(
            node=r.node,
            meter=r.meter,
            time=r.time,
            energy_wh=r.energy_wh,
            tariff_wh=[int(x) for x in r.tariff_wh.split(",")] if r.tariff_wh else None,
            voltage=r.voltage,
            current=r.current,
            power=r.power,
            pf=r.pf,
            relay=RELAY.get(r.relay) if r.relay is not None else None,  # type: ignore[arg-type]
            status=r.status,
        )
        for r in rows
    ]


@router.get("/meters", response_model=Page[MeterOut], summary="List meters (by node, address)")
def list_meters(
    *,
    who: Reader,
    session: DbSession,
    node: Annotated[str | None, Query(description="concentrator")] = None,
    account: Annotated[str | None, Query(description="merchant account")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(models.MeterState).order_by(models.MeterState.node, models.MeterState.address)
    if node is not None:
        query = query.where(models.MeterState.node == node)
    if account is not None:
        who.require_account(account)
        query = query.where(models.MeterState.account == account)
    if who.role is Role.MERCHANT:
        query = query.where(models.MeterState.account == who.account)
    return page(session, query, limit, offset, _meters)


@router.get("/readings", response_model=Page[ReadingOut], summary="Readings, oldest first")
def list_readings(
    *,
    who: Reader,
    session: DbSession,
    meter: Annotated[str | None, Query(description="meter address")] = None,
    node: Annotated[str | None, Query(description="concentrator")] = None,
    since: Annotated[
        Instant | None, Query(description="from this time on (ISO 8601 with offset)")
    ] = None,
    until: Annotated[
        Instant | None, Query(description="before this time (ISO 8601 with offset)")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    reading = models.Reading
    # The columns the answer shows, not ORM objects (a day of one meter is 96 rows).
    query = select(
        reading.node, reading.meter, reading.time, reading.energy_wh, reading.tariff_wh,
        reading.voltage, reading.current, reading.power, reading.pf, reading.relay,
        reading.status,
    ).order_by(reading.time, reading.node, reading.meter)  # fmt: skip
    if who.role is Role.MERCHANT:
        if meter is not None and not session.scalar(
            select(
                exists().where(
                    models.MeterState.address == meter, models.MeterState.account == who.account
                )
            )
        ):
            raise Forbidden(f"meter {meter} is not on account {who.account}")
        query = query.where(
            exists().where(
                models.MeterState.node == models.Reading.node,
                models.MeterState.address == models.Reading.meter,
                models.MeterState.account == who.account,
            )
        )
    if meter is not None:
        query = query.where(models.Reading.meter == meter)
    if node is not None:
        query = query.where(models.Reading.node == node)
    if since is not None:
        query = query.where(models.Reading.time >= utc(since))
    if until is not None:
        query = query.where(models.Reading.time < utc(until))
    return row_page(session, query, limit, offset, _readings)
