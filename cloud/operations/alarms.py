"""The alarm desk: the alarms operators look at (`cloud.chains.alarms`: the cloud's own and the
concentrators'), filtered by place and kind, counted for the console's pop-up, acknowledged
with a note, and each concentrator's read success per bus from its `read_round` events.

Places: a concentrator serves one site (`cloud.registry.site_config` refuses two), so an
alarm is in a site when its node serves a shop of that site (`registry_shops.node`, or a
registry meter on that node in such a shop). An alarm names the shop by number, as the edge
does; its building and floor are the ones the concentrator reports for that shop (`accounts`,
as the reports filter by area). An alarm with no account and no shop (a bus down, a node gone
silent, a cloud alarm about a node) is in its site, and where its node is (`node_places`: the
building, and floor, of all the accounts the node reports): the console groups it there
(`places`) and the filters by building and floor find it there, by the same query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Subquery,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from cloud.db.models import Alarm, Event, ReportedAccount
from cloud.db.registry import Meter, Shop, Site
from cloud.errors import Conflict, NotFound
from cloud.people import oplog

READ_ROUND = "read_round"  # the edge's event each cycle (`edge.runtime.read_success`)
MAX_NOTE = 500


@dataclass(frozen=True, slots=True)
class AlarmFilters:
    node: str | None = None
    site: str | None = None  # the registry's site name
    building: str | None = None
    floor: str | None = None
    shop: str | None = None
    account: str | None = None
    kind: str | None = None
    severity: str | None = None
    acknowledged: bool | None = None
    cleared: bool | None = None
    since: dt.datetime | None = None  # raised at or after
    until: dt.datetime | None = None  # raised before


def site_nodes(site: str) -> Select[tuple[str | None]]:
    """The concentrators serving shops of the site named `site`."""
    in_site = select(Shop.id).join(Site, Site.id == Shop.site_id).where(Site.name == site)
    by_shop = select(Shop.node).where(Shop.id.in_(in_site), Shop.node.is_not(None))
    by_meter = select(Meter.node).where(Meter.shop_id.in_(in_site), Meter.node.is_not(None))
    return by_shop.union(by_meter)  # type: ignore[return-value]


def _clauses(filters: AlarmFilters) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    for column, value in ((Alarm.node, filters.node), (Alarm.shop, filters.shop),
                          (Alarm.account, filters.account), (Alarm.kind, filters.kind),
                          (Alarm.severity, filters.severity)):  # fmt: skip
        if value is not None:
            clauses.append(column == value)
    if filters.site is not None:
        clauses.append(Alarm.node.in_(site_nodes(filters.site)))
    if filters.building is not None or filters.floor is not None:
        clauses.append(_in_place(filters.building, filters.floor))
    if filters.acknowledged is not None:
        acknowledged = Alarm.acknowledged.is_not(None)
        clauses.append(acknowledged if filters.acknowledged else ~acknowledged)
    if filters.cleared is not None:
        clauses.append(Alarm.cleared.is_(filters.cleared))
    if filters.since is not None:
        clauses.append(Alarm.time >= filters.since)
    if filters.until is not None:
        clauses.append(Alarm.time < filters.until)
    return clauses


def _in_place(building: str | None, floor: str | None) -> ColumnElement[bool]:
    """Alarms in `building` and/or on `floor` as the console groups them (`places`): by the
    place of their account or shop, or, for an alarm with neither, by its node's."""
    served = [
        ReportedAccount.node == Alarm.node,
        or_(ReportedAccount.account == Alarm.account, ReportedAccount.shop == Alarm.shop),
    ]
    nodes = node_places()
    placed = select(nodes.c.node)
    if building is not None:
        served.append(ReportedAccount.building == building)
        placed = placed.where(nodes.c.building == building)
    if floor is not None:
        served.append(ReportedAccount.floor == floor)
        placed = placed.where(nodes.c.floor == floor)
    about_node = and_(func.coalesce(Alarm.account, "") == "", func.coalesce(Alarm.shop, "") == "")
    return or_(and_(~about_node, exists().where(*served)),
               and_(about_node, Alarm.node.in_(placed)))  # fmt: skip


def node_places() -> Subquery:
    """Where each concentrator is, by the accounts it reports: (node, building, floor) of a
    node whose accounts are all in one building, on one floor (or floor "" when they are on
    several); a node serving several buildings, or accounts with no building, is nowhere."""
    account = ReportedAccount
    one_floor = func.count(func.distinct(account.floor)) == 1
    return (
        select(account.node, func.min(account.building).label("building"),
               case((one_floor, func.min(account.floor)), else_=literal("")).label("floor"))
        .group_by(account.node)
        .having(func.count(func.distinct(account.building)) == 1, func.min(account.building) != "")
        .subquery("node_places")
    )  # fmt: skip


def listed(filters: AlarmFilters, *, newest_first: bool = False) -> Select[Alarm]:
    """The alarms matching `filters`, oldest (or newest) first."""
    order = (Alarm.time.desc(), Alarm.id.desc()) if newest_first else (Alarm.time, Alarm.id)
    return select(Alarm).where(*_clauses(filters)).order_by(*order)


def counts(session: Session, filters: AlarmFilters) -> list[tuple[str, str, int]]:
    """(severity, kind, count) of the alarms matching `filters`, the most severe first."""
    rank = {"critical": 0, "warning": 1, "info": 2}
    rows = session.execute(
        select(Alarm.severity, Alarm.kind, func.count())
        .where(*_clauses(filters))
        .group_by(Alarm.severity, Alarm.kind)
    ).all()
    return sorted(((s, k, int(n)) for s, k, n in rows), key=lambda r: (rank.get(r[0], 3), r[1]))


def newer(
    session: Session, after: int, also: Collection[int] = (), limit: int = 100
) -> list[Alarm]:
    """The alarms stored after id `after`, and those among `also`, by id: what a live view
    has not shown yet (`also`: ids it skipped that a slower transaction may still commit)."""
    wanted = Alarm.id > after
    if also:
        wanted = or_(wanted, Alarm.id.in_(sorted(also)))
    return list(session.scalars(select(Alarm).where(wanted).order_by(Alarm.id).limit(limit)))


def last_id(session: Session) -> int:
    return int(session.scalar(select(func.max(Alarm.id))) or 0)


def places(session: Session, rows: Sequence[Alarm]) -> dict[int, tuple[str, str, str]]:
    """(building, floor, shop) of each alarm whose account or shop its node reports, by alarm
    id. An alarm with neither (a bus, a node gone silent, the cloud's about a node) is where
    its node is (`node_places`, as the filters find it), with no shop."""
    nodes = sorted({a.node for a in rows if a.node})
    if not nodes:
        return {}
    by_account: dict[tuple[str | None, str | None], tuple[str, str, str]] = {}
    by_shop: dict[tuple[str | None, str | None], tuple[str, str, str]] = {}
    for node, account, shop, building, floor in session.execute(
        select(ReportedAccount.node, ReportedAccount.account, ReportedAccount.shop,
               ReportedAccount.building, ReportedAccount.floor)
        .where(ReportedAccount.node.in_(nodes))
    ):  # fmt: skip
        by_account[node, account] = (building, floor, shop)
        by_shop.setdefault((node, shop), (building, floor, shop))
    where = node_places()
    by_node = {node: (building, floor, "") for node, building, floor in session.execute(
        select(where.c.node, where.c.building, where.c.floor).where(where.c.node.in_(nodes))
    )}  # fmt: skip
    found = {}
    for a in rows:
        if a.account or a.shop:
            place = by_account.get((a.node, a.account)) or by_shop.get((a.node, a.shop))
        else:
            place = by_node.get(a.node)
        if place is not None:
            found[a.id] = place
    return found


def acknowledge(
    session: Session, alarm_id: int, note: str, actor: oplog.Actor, now: dt.datetime
) -> Alarm:
    """Mark the alarm seen by `actor` with `note` and log it; once only (409 after)."""
    row = session.scalars(select(Alarm).where(Alarm.id == alarm_id).with_for_update()).one_or_none()
    if row is None:
        raise NotFound(f"no alarm {alarm_id}")
    if row.acknowledged is not None:
        raise Conflict(f"alarm {alarm_id} was acknowledged by {row.acknowledged_by} already")
    row.acknowledged, row.acknowledged_by, row.note = now, actor.user, note
    oplog.record(session, actor, "alarm.acknowledge", f"alarm:{alarm_id}",
                 {"acknowledged": None},
                 {"node": row.node, "kind": row.kind, "note": note},
                 now)  # fmt: skip
    return row


# -- read success ---------------------------------------------------------------------------


@dataclass(slots=True)
class BusSuccess:
    """One bus of one concentrator over a window of rounds: meters attempted and read, summed,
    and the last round's."""

    node: str
    bus: str
    rounds: int = 0
    attempted: int = 0
    read: int = 0
    last_time: dt.datetime | None = None
    last_attempted: int = 0
    last_read: int = 0
    down: bool = False  # in the last round

    @property
    def rate(self) -> float | None:
        return None if not self.attempted else round(self.read / self.attempted, 4)

    def add(self, time: dt.datetime, attempted: int, read: int, down: bool) -> None:
        self.rounds += 1
        self.attempted += attempted
        self.read += read
        self.last_time, self.last_attempted, self.last_read, self.down = (
            time, attempted, read, down
        )  # fmt: skip


def read_success(
    session: Session, since: dt.datetime, *, node: str | None = None, site: str | None = None
) -> list[BusSuccess]:
    """Per concentrator and bus, what its `read_round` events since `since` say."""
    query = select(Event.node, Event.time, Event.detail).where(
        Event.kind == READ_ROUND, Event.time >= since
    )
    if node is not None:
        query = query.where(Event.node == node)
    if site is not None:
        query = query.where(Event.node.in_(site_nodes(site)))
    tally: dict[tuple[str, str], BusSuccess] = {}
    for event_node, time, detail in session.execute(query.order_by(Event.time, Event.event_id)):
        for name, attempted, read, down in _buses(detail):
            bus = tally.setdefault((event_node, name), BusSuccess(event_node, name))
            bus.add(time, attempted, read, down)
    return [tally[key] for key in sorted(tally)]


def _buses(detail: Any) -> list[tuple[str, int, int, bool]]:
    """(bus, attempted, read, down) of a round's detail; what is not shaped so is skipped (the
    detail is the edge's own JSON, trusted for nothing)."""
    buses = detail.get("buses") if isinstance(detail, dict) else None
    out = []
    for bus in buses if isinstance(buses, list) else []:
        if not isinstance(bus, dict):
            continue
        name, attempted, read = bus.get("bus"), bus.get("attempted"), bus.get("read")
        if (isinstance(name, str) and type(attempted) is int and type(read) is int
                and 0 <= read <= attempted):  # fmt: skip
            out.append((name, attempted, read, bus.get("down") is True))
    return out
