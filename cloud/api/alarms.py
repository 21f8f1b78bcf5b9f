"""`/alarms`: what operators must see (`cloud.operations.alarms`): the cloud's own alarms (a
quarantined node, a refused batch, a recharge the edge refused …) and the concentrators'
(low balance, arrears, relay, malicious load, bus down, read success low …), by place, kind
and severity; counted for the console's pop-up; acknowledged with a note; and each
concentrator's read success per bus.

    GET  /alarms?site=Plaza&floor=1F&kind=low_balance&severity=warning&acknowledged=false
                &cleared=false&since=2026-12-01T00:00:00%2B08:00&until=…
                &sort=-time                        → a page of alarms, newest first
    GET  /alarms/counts?acknowledged=false         → {total, groups: [{severity, kind, count}]}
    POST /alarms/42/acknowledge {"note": "…"}       → the alarm, acknowledged (409 the 2nd time)
    GET  /alarms/read-success?site=Plaza&hours=24   → per node and bus: rounds, read/attempted

Who may: staff and installers read (`READ_ALL`): alarms are about concentrators, the field's
work; the field acknowledges (`FIELD`: admin, operator, installer), and the operator log
records who did, with the note.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field, StrictStr

from cloud.api.auth import allow
from cloud.api.common import (
    DbSession,
    Instant,
    Limit,
    Now,
    Offset,
    Out,
    Page,
    StoredTime,
    StrictBody,
    answers,
    page,
    utc,
)
from cloud.db import models
from cloud.operations import alarms
from cloud.operations.alarms import AlarmFilters
from cloud.people.auth import FIELD, READ_ALL, Principal

router = APIRouter(prefix="/alarms", tags=["alarms"])

Name = Annotated[str | None, Query(min_length=1, max_length=200)]
Severity = Literal["info", "warning", "critical"]
BY_NODE = "; an alarm about a bus or the node: where all its node's accounts are"


class AlarmOut(Out):
    id: int
    node: str | None
    source: Literal["cloud", "edge"] = Field(description="who raised it")
    event_id: int | None = Field(description="the concentrator's event id (edge alarms)")
    kind: str
    severity: str = Field(description="info, warning or critical")
    meter: str | None
    shop: str | None = Field(description="the shop's number")
    account: str | None
    detail: str
    facts: dict[str, Any] = Field(
        description="what the concentrator said, as it said it (node_silent: what the cloud "
        "last heard: last_seen, status, silent_after_min)"
    )
    time: StoredTime
    cleared: bool = Field(description="over: the edge said so, or a quarantine was lifted")
    cleared_at: StoredTime | None = Field(description="when it was over (none if open)")
    acknowledged: StoredTime | None
    acknowledged_by: str | None
    note: str


def _one(row: models.Alarm) -> AlarmOut:
    return AlarmOut.model_validate(
        {c: getattr(row, c) for c in AlarmOut.model_fields if c != "source"}
        | {"source": "cloud" if row.event_id is None else "edge"}
    )


def _out(rows: Sequence[models.Alarm]) -> list[AlarmOut]:
    return [_one(a) for a in rows]


def _filters(
    *,
    node: Annotated[str | None, Query(max_length=64, description="concentrator")] = None,
    site: Annotated[Name, Query(description="the registry's site name")] = None,
    building: Annotated[Name, Query(description=f"as the concentrator reports it{BY_NODE}")] = None,
    floor: Annotated[Name, Query(description=f"as the concentrator reports it{BY_NODE}")] = None,
    shop: Annotated[Name, Query(description="the shop's number")] = None,
    account: Name = None,
    kind: Annotated[Name, Query(description="low_balance, bus_down, quarantined …")] = None,
    severity: Annotated[Severity | None, Query()] = None,
    acknowledged: Annotated[bool | None, Query(description="false: not yet seen")] = None,
    cleared: Annotated[bool | None, Query(description="true: only cleared; false: open")] = None,
    since: Annotated[Instant | None, Query(description="raised at or after")] = None,
    until: Annotated[Instant | None, Query(description="raised before")] = None,
) -> AlarmFilters:
    return AlarmFilters(node, site, building, floor, shop, account, kind, severity,
                        acknowledged, cleared, None if since is None else utc(since),
                        None if until is None else utc(until))  # fmt: skip


Filters = Annotated[AlarmFilters, Depends(_filters)]


@router.get("", response_model=Page[AlarmOut], summary="List alarms, by time")
def list_alarms(
    *,
    who: Annotated[Principal, allow(*READ_ALL)],
    session: DbSession,
    filters: Filters,
    sort: Annotated[Literal["time", "-time"], Query(description="-time: newest first")] = "time",
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = alarms.listed(filters, newest_first=sort == "-time")
    return page(session, query, limit, offset, _out)


class CountOut(Out):
    severity: str
    kind: str
    count: int


class CountsOut(Out):
    total: int
    groups: list[CountOut] = Field(description="per severity and kind, the most severe first")


@router.get("/counts", response_model=CountsOut, summary="Alarms counted by severity and kind")
def count_alarms(
    who: Annotated[Principal, allow(*READ_ALL)], session: DbSession, filters: Filters
) -> CountsOut:
    groups = [CountOut(severity=s, kind=k, count=n) for s, k, n in alarms.counts(session, filters)]
    return CountsOut(total=sum(g.count for g in groups), groups=groups)


class AcknowledgeIn(StrictBody):
    note: Annotated[StrictStr, Field(min_length=1, max_length=alarms.MAX_NOTE)]


@router.post(
    "/{alarm_id}/acknowledge",
    response_model=AlarmOut,
    summary="Acknowledge an alarm, with a note (logged)",
    responses=answers(e404="no such alarm", e409="acknowledged already"),
)
def acknowledge_alarm(
    alarm_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    body: AcknowledgeIn,
    who: Annotated[Principal, allow(*FIELD)],
    session: DbSession,
    now: Now,
) -> AlarmOut:
    return _one(alarms.acknowledge(session, alarm_id, body.note, who.actor, now))


class BusSuccessOut(Out):
    node: str
    bus: str
    rounds: int = Field(description="read rounds in the window")
    attempted: int = Field(description="meter reads attempted, over the window")
    read: int
    rate: float | None = Field(description="read / attempted; none when nothing was attempted")
    last_time: StoredTime
    last_attempted: int
    last_read: int
    down: bool = Field(description="the bus's port was down in the last round")


@router.get(
    "/read-success",
    response_model=list[BusSuccessOut],
    summary="Read success per concentrator and bus, from its read rounds",
)
def read_success(
    *,
    who: Annotated[Principal, allow(*READ_ALL)],
    session: DbSession,
    now: Now,
    node: Annotated[str | None, Query(max_length=64)] = None,
    site: Name = None,
    hours: Annotated[int, Query(ge=1, le=24 * 7, description="the window, to now")] = 24,
) -> list[BusSuccessOut]:
    since = now - dt.timedelta(hours=hours)
    buses = alarms.read_success(session, since, node=node, site=site)
    return [BusSuccessOut.model_validate(b) for b in buses]
