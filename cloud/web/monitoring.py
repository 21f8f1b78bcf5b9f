"""What the console's monitoring screen shows: the building → floor → shop tree, a page of
meters with their live values, and one meter's recent daily use.

Read from the tables the API reads, through the same code where there is some:

| column                 | source                                                           |
|------------------------|------------------------------------------------------------------|
| shop, building, floor  | `accounts` (the live view, as `/accounts` and the reports)       |
| merchant               | the registry's account → merchant                                |
| meter, register, relay | `meters` (as `/meters`)                                          |
| V, I, P, PF            | the meter's reading at its `last_reading` (as `/readings`)       |
| this and 2 prior months| `consumption_monthly` (as the consumption report)                |
| online                 | its status says online and it was heard from within silent_after |
|                        | (`cloud.db.presence` on the concentrator's `online`, `last_seen`)|
| balance, arrears, days | `balances` through `cloud.notices.sources` and the planner's     |
|                        | `AccountView` (`in_arrears`, `days_left`), as the notices use    |

10 000 shops: filtering, ordering and paging are one SQL statement (LIMIT/OFFSET); the extras
are read for the page's rows only (at most `MAX_SIZE`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, select, tuple_
from sqlalchemy.orm import Session

from cloud.chains.rollups import SITE_ZONE
from cloud.db import models
from cloud.db import registry as reg
from cloud.db.presence import on_line
from cloud.db.rollups import ConsumptionDaily, ConsumptionMonthly
from cloud.notices import sources
from cloud.notices.planner import AccountView
from ledger.accounts import Pocket, pocket_id

PAGE_SIZE = 50
MAX_SIZE = 100
STATES = ("online", "offline", "arrears")
CHART_DAYS = 30
MAX_Q = 64


@dataclass(frozen=True, slots=True)
class MeterFilters:
    """The table's filters (empty: any). `building`/`floor` are names, as the live view keeps
    them; `site` is the registry's id."""

    q: str = ""
    site: int | None = None
    building: str = ""
    floor: str = ""
    shop: str = ""
    state: str = ""
    # now − silent_after: a node heard from before counts offline, `online` and the `state`
    # filter alike (`cloud.db.presence`); None: its retained status alone
    heard_since: dt.datetime | None = None

    def query(self) -> dict[str, str]:
        """The filters as URL parameters (empty ones left out)."""
        pairs = {"q": self.q, "site": "" if self.site is None else str(self.site),
                 "building": self.building, "floor": self.floor, "shop": self.shop,
                 "state": self.state}  # fmt: skip
        return {k: v for k, v in pairs.items() if v}


@dataclass(frozen=True, slots=True)
class MeterRow:
    node: str
    address: str
    account: str
    shop: str
    building: str
    floor: str
    merchant: str
    energy_wh: int | None
    relay: int | None
    last_reading: dt.datetime | None
    online: bool
    last_seen: dt.datetime | None
    months_wh: tuple[int, int, int]  # this month, last month, the month before
    voltage: float | None
    current: float | None
    power: float | None
    pf: float | None
    balance_fen: int | None  # prepaid available; None: nothing booked yet
    in_arrears: bool
    days_left: int | None


@dataclass(frozen=True, slots=True)
class MeterPage:
    rows: list[MeterRow]
    total: int
    offset: int
    size: int

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.size if self.offset + self.size < self.total else None

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.size) if self.offset > 0 else None


@dataclass(frozen=True, slots=True)
class Floor:
    name: str
    shops: list[str]  # only for the floor chosen (a tree of 10 000 shops is not sent)
    count: int


@dataclass(frozen=True, slots=True)
class Building:
    name: str
    floors: list[Floor]


@dataclass(frozen=True, slots=True)
class SiteNode:
    id: int
    name: str
    buildings: list[Building]


def _pocket(owner: Any, pocket: Pocket, *, pending: bool = True) -> Any:
    """A pocket's available amount as `sources.available` computes it, as SQL."""
    balance = models.Balance
    amount = balance.credits_posted - balance.debits_posted
    if pending:
        amount = amount - balance.debits_pending
    return select(amount).where(balance.account == owner + f":{pocket.value}").scalar_subquery()


def _in_arrears(owner: Any, credit_limit: Any) -> ColumnElement[bool]:
    """`planner.AccountView.in_arrears` as SQL (a test holds the two to each other)."""
    prepaid = func.coalesce(_pocket(owner, Pocket.PREPAID), 0)
    subsidy = func.coalesce(_pocket(owner, Pocket.SUBSIDY), 0)
    grace = func.coalesce(_pocket(owner, Pocket.GRACE), 0)
    debt = func.coalesce(_pocket(owner, Pocket.DEBT, pending=False), 0)
    return or_(debt < 0, and_(prepaid <= -credit_limit, subsidy <= 0, grace <= 0))


def matching(filters: MeterFilters) -> Select[Any]:
    """The meters matching `filters`, unordered: the table's rows, and the meters a batch
    of the console's sends orders to (`cloud.web.batches`)."""
    meter, live, node = models.MeterState, models.ReportedAccount, models.Concentrator
    account, merchant, shop = reg.Account, reg.Merchant, reg.Shop
    columns: list[Any] = [
        meter.node, meter.address, meter.account,
        func.coalesce(live.shop, "").label("shop"),
        func.coalesce(live.building, "").label("building"),
        func.coalesce(live.floor, "").label("floor"),
        func.coalesce(merchant.name, "").label("merchant"),
        meter.energy_wh, meter.relay, meter.last_reading,
        on_line(node, filters.heard_since).label("online"), node.last_seen,
    ]  # fmt: skip
    query = (
        select(*columns)
        .join(node, node.node == meter.node)
        .outerjoin(live, live.account == meter.account)
        .outerjoin(account, account.id == meter.account)
        .outerjoin(merchant, merchant.id == account.merchant_id)
        .outerjoin(shop, shop.id == account.shop_id)
    )  # fmt: skip
    if filters.q:
        pattern = "%" + filters.q.replace("\\", "").replace("%", "").replace("_", "") + "%"
        query = query.where(or_(
            live.shop.ilike(pattern), merchant.name.ilike(pattern),
            meter.address.ilike(pattern), meter.account.ilike(pattern),
        ))  # fmt: skip
    if filters.site is not None:
        query = query.where(shop.site_id == filters.site)
    for value, column in ((filters.building, live.building), (filters.floor, live.floor),
                          (filters.shop, live.shop)):  # fmt: skip
        if value:
            query = query.where(column == value)
    if filters.state == "online":
        query = query.where(on_line(node, filters.heard_since))
    elif filters.state == "offline":
        query = query.where(~on_line(node, filters.heard_since))
    elif filters.state == "arrears":
        limit = func.coalesce(account.credit_limit_fen, literal(0))
        query = query.where(meter.account != "", _in_arrears(meter.account, limit))
    return query


def arrears_accounts(session: Session) -> int:
    """Accounts with a meter in arrears (the table's `state=arrears` filter, counted once per
    account): the dashboard's arrears figure."""
    found = matching(MeterFilters(state="arrears")).subquery()
    return session.scalar(select(func.count(func.distinct(found.c.account)))) or 0


def _months(today: dt.date) -> list[dt.date]:
    index = today.year * 12 + today.month - 1
    return [dt.date((index - back) // 12, (index - back) % 12 + 1, 1) for back in range(3)]


def _monthly(session: Session, keys: list[tuple[str, str]], today: dt.date) -> dict[Any, int]:
    months = _months(today)
    use = ConsumptionMonthly
    found: dict[Any, int] = {}
    if not keys:
        return found
    for account, meter, month, wh in session.execute(
        select(use.account, use.meter, use.month, func.sum(use.wh))
        .where(use.account.in_({a for a, _ in keys}), use.meter.in_({m for _, m in keys}),
               use.month >= months[-1])
        .group_by(use.account, use.meter, use.month)
    ):  # fmt: skip
        found[account, meter, month] = int(wh or 0)
    return found


def _latest(session: Session, rows: list[Any]) -> dict[tuple[str, str], Any]:
    reading = models.Reading
    wanted = [
        and_(reading.node == r.node, reading.meter == r.address, reading.time == r.last_reading)
        for r in rows
        if r.last_reading is not None
    ]
    if not wanted:
        return {}
    found = session.execute(
        select(reading.node, reading.meter, reading.voltage, reading.current, reading.power,
               reading.pf).where(or_(*wanted))
    )  # fmt: skip
    return {(r.node, r.meter): r for r in found}


def _credit_limits(session: Session, accounts: list[str]) -> dict[str, int]:
    rows = session.execute(
        select(reg.Account.id, reg.Account.credit_limit_fen).where(reg.Account.id.in_(accounts))
    )
    return {account: int(limit) for account, limit in rows}


def meter_page(
    session: Session, filters: MeterFilters, now: dt.datetime, offset: int = 0,
    size: int = PAGE_SIZE,
) -> MeterPage:  # fmt: skip
    """The page of meters matching `filters`, ordered by building, floor, shop and meter."""
    size = max(1, min(size, MAX_SIZE))
    base = matching(filters)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    # The page's meters are chosen first, then read in full: sorting every meter with only
    # the columns it is sorted by lets PostgreSQL leave out the registry's joins (unique keys,
    # nothing read), half the cost of the sort at 10 000 meters.
    column = base.selected_columns
    keys = base.with_only_columns(column.node, column.address, column.building, column.floor,
                                  column.shop)  # fmt: skip
    chosen = [(r.node, r.address) for r in session.execute(
        keys.order_by("building", "floor", "shop", column.node, column.address)
        .limit(size).offset(offset)
    )]  # fmt: skip
    meter = models.MeterState
    found = {} if not chosen else {(r.node, r.address): r for r in session.execute(
        base.where(tuple_(meter.node, meter.address).in_(chosen))
    )}  # fmt: skip
    rows = [found[key] for key in chosen if key in found]  # one released meanwhile: gone
    return MeterPage(_complete(session, rows, now), total, offset, size)


def _complete(session: Session, rows: list[Any], now: dt.datetime) -> list[MeterRow]:
    today = now.astimezone(SITE_ZONE).date()
    accounts = sorted({r.account for r in rows if r.account})
    found = sources.pockets(session, accounts)
    daily = sources.daily_fen(session, accounts, today)
    limits = _credit_limits(session, accounts)
    monthly = _monthly(session, [(r.account, r.address) for r in rows], today)
    latest = _latest(session, rows)
    months = _months(today)
    out = []
    for r in rows:
        view = None
        if r.account:
            prepaid = found.get(pocket_id(r.account, Pocket.PREPAID))
            debt = found.get(pocket_id(r.account, Pocket.DEBT))
            view = AccountView(
                account=r.account, shop=r.shop, zone=SITE_ZONE,
                prepaid_fen=None if prepaid is None else sources.available(prepaid),
                subsidy_wh=sources.available(found.get(pocket_id(r.account, Pocket.SUBSIDY))),
                grace_wh=sources.available(found.get(pocket_id(r.account, Pocket.GRACE))),
                debt_fen=0 if debt is None else debt.debits_posted - debt.credits_posted,
                credit_limit_fen=limits.get(r.account, 0), daily_fen=daily.get(r.account),
            )  # fmt: skip
        reading = latest.get((r.node, r.address))
        out.append(MeterRow(
            node=r.node, address=r.address, account=r.account, shop=r.shop,
            building=r.building, floor=r.floor, merchant=r.merchant, energy_wh=r.energy_wh,
            relay=r.relay, last_reading=r.last_reading, online=bool(r.online),
            last_seen=r.last_seen,
            months_wh=(monthly.get((r.account, r.address, months[0]), 0),
                       monthly.get((r.account, r.address, months[1]), 0),
                       monthly.get((r.account, r.address, months[2]), 0)),
            voltage=None if reading is None else reading.voltage,
            current=None if reading is None else reading.current,
            power=None if reading is None else reading.power,
            pf=None if reading is None else reading.pf,
            balance_fen=None if view is None else view.prepaid_fen,
            in_arrears=False if view is None else view.in_arrears,
            days_left=None if view is None else view.days_left,
        ))  # fmt: skip
    return out


def meters_at(
    session: Session, address: str, now: dt.datetime, heard_since: dt.datetime
) -> list[MeterRow]:
    """The meters with this address (one per concentrator that has it; usually one)."""
    found = MeterFilters(heard_since=heard_since)
    query = matching(found).where(models.MeterState.address == address)
    return _complete(session, list(session.execute(query.order_by(models.MeterState.node))), now)


def newest_readings(session: Session) -> dict[str, dt.datetime]:
    """Each concentrator's newest meter reading time (what a live view has seen so far)."""
    meter = models.MeterState
    rows = session.execute(select(meter.node, func.max(meter.last_reading)).group_by(meter.node))
    return {node: when for node, when in rows if when is not None}


def read_since(
    session: Session, marks: dict[str, dt.datetime | None], now: dt.datetime
) -> list[MeterRow]:
    """The meters of the nodes in `marks` read after the node's mark (None: all of its
    meters), as the table shows them, oldest reading first."""
    if not marks:
        return []
    meter = models.MeterState
    wanted = [meter.node == node if mark is None else
              and_(meter.node == node, meter.last_reading > mark)
              for node, mark in sorted(marks.items())]  # fmt: skip
    query = matching(MeterFilters()).where(or_(*wanted))
    rows = session.execute(query.order_by(meter.last_reading, meter.node, meter.address))
    return _complete(session, list(rows), now)


def meters_of(
    session: Session, account: str, now: dt.datetime, heard_since: dt.datetime
) -> list[MeterRow]:
    """The meters of one account (a shop's page), as the table shows them."""
    found = MeterFilters(heard_since=heard_since)
    query = matching(found).where(models.MeterState.account == account)
    ordered = query.order_by(models.MeterState.node, models.MeterState.address)
    return _complete(session, list(session.execute(ordered)), now)


def daily_use(session: Session, row: MeterRow, now: dt.datetime) -> list[tuple[dt.date, int]]:
    """Wh per day over the last `CHART_DAYS` days (today last), zero when none."""
    today = now.astimezone(SITE_ZONE).date()
    first = today - dt.timedelta(days=CHART_DAYS - 1)
    use = ConsumptionDaily
    found = dict(
        session.execute(
            select(use.day, func.sum(use.wh))
            .where(use.account == row.account, use.meter == row.address, use.day >= first)
            .group_by(use.day)
        ).all()
    )
    days = [first + dt.timedelta(days=n) for n in range(CHART_DAYS)]
    return [(day, int(found.get(day) or 0)) for day in days]


def tree(session: Session, chosen: MeterFilters) -> list[SiteNode]:
    """Sites → buildings → floors from the registry, with each floor's shop count; the shops
    of the chosen floor only."""
    site, building, floor, shop = reg.Site, reg.Building, reg.Floor, reg.Shop
    rows = session.execute(
        select(site.id, site.name, building.name, floor.name, func.count(shop.id))
        .join(building, building.site_id == site.id)
        .join(floor, floor.building_id == building.id)
        .outerjoin(shop, shop.floor_id == floor.id)
        .group_by(site.id, site.name, building.name, floor.name)
        .order_by(site.name, building.name, floor.name)
    ).all()
    shops: list[str] = []
    if chosen.building and chosen.floor:
        shops = list(session.scalars(
            select(shop.number).join(floor, floor.id == shop.floor_id)
            .join(building, building.id == floor.building_id)
            .where(building.name == chosen.building, floor.name == chosen.floor)
            .order_by(shop.number)
        ))  # fmt: skip
    sites: dict[int, SiteNode] = {}
    for site_id, site_name, building_name, floor_name, count in rows:
        node = sites.setdefault(site_id, SiteNode(site_id, site_name, []))
        if not node.buildings or node.buildings[-1].name != building_name:
            node.buildings.append(Building(building_name, []))
        here = chosen.building == building_name and chosen.floor == floor_name
        node.buildings[-1].floors.append(Floor(floor_name, shops if here else [], int(count)))
    return list(sites.values())
