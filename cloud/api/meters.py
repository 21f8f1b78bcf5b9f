"""`/meters` and `/readings`: the meters the concentrators report and what they uploaded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, Field
from sqlalchemy import select

from cloud.api.common import DbSession, Limit, Offset, Out, Page, StoredTime, page, utc
from cloud.db import models

router = APIRouter(tags=["meters"])

RELAY = {1: "closed", 0: "open"}
Relay = Literal["closed", "open"] | None


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


def _meters(rows: Sequence[models.Meter]) -> list[MeterOut]:
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


def _readings(rows: Sequence[models.Reading]) -> list[ReadingOut]:
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
    session: DbSession,
    node: Annotated[str | None, Query(description="concentrator")] = None,
    account: Annotated[str | None, Query(description="merchant account")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(models.Meter).order_by(models.Meter.node, models.Meter.address)
    if node is not None:
        query = query.where(models.Meter.node == node)
    if account is not None:
        query = query.where(models.Meter.account == account)
    return page(session, query, limit, offset, _meters)


@router.get("/readings", response_model=Page[ReadingOut], summary="Readings, oldest first")
def list_readings(
    *,
    session: DbSession,
    meter: Annotated[str | None, Query(description="meter address")] = None,
    node: Annotated[str | None, Query(description="concentrator")] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="from this time on (ISO 8601 with offset)")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="before this time (ISO 8601 with offset)")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(models.Reading).order_by(
        models.Reading.time, models.Reading.node, models.Reading.meter
    )
    if meter is not None:
        query = query.where(models.Reading.meter == meter)
    if node is not None:
        query = query.where(models.Reading.node == node)
    if since is not None:
        query = query.where(models.Reading.time >= utc(since))
    if until is not None:
        query = query.where(models.Reading.time < utc(until))
    return page(session, query, limit, offset, _readings)
