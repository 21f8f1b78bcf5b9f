"""The report queries: consumption (classified and itemised), deposits, subsidies, refunds and
meter status with read success rate. Each returns a `Spec` (`cloud.reports.core`) to page
(`fetch`) or export (`stream`); they take no session, so a benchmark can build one and run it
with its own (`fetch(session, consumption(Filters(...)), sort=None, limit=50, offset=0)`).

Where the numbers come from, and the index each query leads with:

| report      | source                                                | index                      |
|-------------|-------------------------------------------------------|----------------------------|
| consumption | `consumption_account_monthly` (grouped by account or  | consumption_*_by_month/day |
|             | area), else `consumption_monthly`; `_daily` for the   |                            |
|             | days around whole months; accounts inventory          |                            |
| deposits    | `recharges`, posted `corrections` of each payment     | recharges_by_created       |
| subsidies   | ledger `subsidy_issue` / `subsidy_expire`, rollup     | ledger_by_code_time        |
| refunds     | ledger `refund` (pending = reserved), `refunds` table | ledger_by_code_time        |
| meters      | `meters`, `readings` in the window                    | readings_by_meter_time     |

Deposits of a shop, building or floor are read account by account instead: the area's accounts
from the inventory, then each one's deposits of the window from `recharges_by_account_created`,
which on PostgreSQL carries every column shown, so the planner takes it (an index-only scan)
over reading the whole window's deposits by time and filtering them (migration 0035).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    FromClause,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    union_all,
)

from cloud.chains.rollups import SITE_ZONE
from cloud.db import models, operations, registry
from cloud.db.rollups import ConsumptionAccountMonthly, ConsumptionDaily, ConsumptionMonthly
from cloud.errors import Invalid
from cloud.reports.core import Column, Kind, Spec, Window, choose
from ledger.accounts import Pocket
from ledger.transfers import Code

READ_INTERVAL = dt.timedelta(minutes=15)
GROUPS = ("account", "shop", "building", "floor", "tariff_period", "account_type", "day",
          "meter", "pocket")  # fmt: skip
PER_ACCOUNT = frozenset({"account", "shop", "building", "floor", "account_type"})
REFUND_COLUMNS = ("time", "refund", "account", "shop", "building", "floor", "method", "status",
                  "fen", "operator", "paid_by", "closed", "transfer")  # fmt: skip

_CD = ConsumptionDaily.__table__
_CM = ConsumptionMonthly.__table__
_CAM = ConsumptionAccountMonthly.__table__
_ACC = models.ReportedAccount.__table__
_REG = registry.Account.__table__
_LE = models.LedgerEntry.__table__
_MER = registry.Merchant.__table__
_SHOP = registry.Shop.__table__
_SITE = registry.Site.__table__


def _sum(value: Any) -> Any:
    """SUM as a bigint (PostgreSQL sums bigints as numeric: Decimals in Python)."""
    return cast(func.sum(value), BigInteger)


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters reports share (None: any). `window` is required."""

    window: Window
    account: str | None = None
    shop: str | None = None
    building: str | None = None
    floor: str | None = None
    merchant: str | None = None  # the merchant's name, as the registry has it
    id_number: str | None = None  # the merchant's identity number
    site: str | None = None  # the site's name, as the registry has it

    def shown(self) -> dict[str, str]:
        shown = {"日期": self.window.text()}
        labels = {"site": "站点", "account": "账户", "shop": "商铺", "building": "楼栋",
                  "floor": "楼层", "merchant": "商户", "id_number": "证件号"}  # fmt: skip
        for key, label in labels.items():
            value = getattr(self, key)
            if value:
                shown[label] = value
        return shown

    def area(self, account: Any, inventory: FromClause) -> list[ColumnElement[bool]]:
        """WHERE clauses for the account, area, site and merchant filters (a merchant's
        accounts, and a site's — those of its shops — are the registry's: the concentrators'
        inventory names no merchant and no site)."""
        clauses: list[ColumnElement[bool]] = []
        if self.account:
            clauses.append(account == self.account)
        for key in ("shop", "building", "floor"):
            value = getattr(self, key)
            if value:
                clauses.append(inventory.c[key] == value)
        if self.site:
            shops = select(_SHOP.c.id).join(_SITE, _SITE.c.id == _SHOP.c.site_id)
            in_site = select(_REG.c.id).where(
                _REG.c.shop_id.in_(shops.where(_SITE.c.name == self.site))
            )
            clauses.append(account.in_(in_site))
        for value, column in ((self.merchant, _MER.c.name), (self.id_number, _MER.c.id_number)):
            if value:
                owned = select(_REG.c.id).join(_MER, _MER.c.id == _REG.c.merchant_id)
                clauses.append(account.in_(owned.where(column == value)))
        return clauses

    @property
    def by_area(self) -> bool:
        return bool(self.shop or self.building or self.floor)


_AREA = (Column("shop", "商铺"), Column("building", "楼栋"), Column("floor", "楼层"))


def _area_columns(inventory: FromClause) -> list[ColumnElement[Any]]:
    return [func.coalesce(inventory.c[k], "").label(k) for k in ("shop", "building", "floor")]


# -- consumption ---------------------------------------------------------------------------------

_GROUP_COLUMNS = {
    "account": Column("account", "账户"),
    "shop": Column("shop", "商铺"),
    "building": Column("building", "楼栋"),
    "floor": Column("floor", "楼层"),
    "tariff_period": Column("tariff_period", "时段"),
    "account_type": Column("account_type", "账户类型"),
    "day": Column("day", "日期", Kind.DATE),
    "meter": Column("meter", "电表"),
    "pocket": Column("pocket", "扣费来源"),
}


def parse_groups(text: str | None) -> tuple[str, ...]:
    """`account`, `account,day` …: up to three of `GROUPS`, each once."""
    groups = tuple(g.strip() for g in (text or "account").split(",") if g.strip())
    if not groups or len(groups) > 3 or len(set(groups)) != len(groups):
        raise Invalid(f"group takes 1 to 3 distinct names of: {', '.join(GROUPS)}")
    for group in groups:
        choose(group, GROUPS, "group")
    return groups


def whole_months(window: Window) -> tuple[list[dt.date], list[tuple[dt.date, dt.date]]]:
    """The window as the first days of the calendar months it covers whole, and the runs of
    days (first, last) left over at its ends."""
    months: list[dt.date] = []
    month = window.first.replace(day=1)
    if month < window.first:
        month = _next_month(month)
    while _next_month(month) - dt.timedelta(days=1) <= window.last:
        months.append(month)
        month = _next_month(month)
    if not months:
        return [], [(window.first, window.last)]
    runs = []
    if window.first < months[0]:
        runs.append((window.first, months[0] - dt.timedelta(days=1)))
    after = _next_month(months[-1])
    if after <= window.last:
        runs.append((after, window.last))
    return months, runs


def _next_month(first: dt.date) -> dt.date:
    return (first + dt.timedelta(days=32)).replace(day=1)


def rollup(window: Window, *, by_day: bool, pocket: str | None = None) -> FromClause:
    """The consumption rollup rows of the window: account, meter, day, period, pocket, wh, fen.
    Whole months come from `consumption_monthly` (their `day` is the month's first), the days
    around them from `consumption_daily`; `by_day` reads days only (itemised reports)."""
    months, runs = ([], [(window.first, window.last)]) if by_day else whole_months(window)
    parts = []
    for table, day, spans in (
        (_CM, _CM.c.month, [(months[0], months[-1])] if months else []),
        (_CD, _CD.c.day, runs),
    ):
        for first, last in spans:
            part = select(table.c.account, table.c.meter, day.label("day"), table.c.period,
                          table.c.pocket, table.c.wh, table.c.fen).where(day >= first,
                                                                         day <= last)  # fmt: skip
            if pocket is not None:
                part = part.where(table.c.pocket == pocket)
            parts.append(part)
    if len(parts) == 1:
        return parts[0].subquery("cd")
    return union_all(*parts).subquery("cd")


def account_rollup(window: Window) -> FromClause:
    """Per account the window's rollup rows: account, wh, subsidy_wh, fen. Whole months come
    from `consumption_account_monthly` (one row per account and month), the days around them
    from `consumption_daily`."""
    months, runs = whole_months(window)
    parts = []
    if months:
        parts.append(
            select(_CAM.c.account, _CAM.c.wh, _CAM.c.subsidy_wh, _CAM.c.fen).where(
                _CAM.c.month >= months[0], _CAM.c.month <= months[-1]
            )
        )
    subsidy = case((_CD.c.pocket == Pocket.SUBSIDY.value, _CD.c.wh), else_=0)
    for first, last in runs:
        parts.append(
            select(_CD.c.account, _CD.c.wh, subsidy.label("subsidy_wh"), _CD.c.fen).where(
                _CD.c.day >= first, _CD.c.day <= last
            )
        )
    if len(parts) == 1:
        return parts[0].subquery("cd")
    return union_all(*parts).subquery("cd")


def consumption(filters: Filters, groups: tuple[str, ...] = ("account",)) -> Spec:
    """Wh (all, and of it from subsidy) and fen per group over the window's days. Classified:
    group by tariff_period, account_type, shop/building/floor; itemised: add `day`."""
    for group in groups:
        choose(group, GROUPS, "group")
    inventory, types = _ACC.alias("inv"), _REG.alias("reg")
    per_account = PER_ACCOUNT.issuperset(groups)
    cd = (
        account_rollup(filters.window)
        if per_account
        else rollup(filters.window, by_day="day" in groups)
    )
    dims: dict[str, ColumnElement[Any]] = {
        "account": cd.c.account,
        "shop": func.coalesce(inventory.c.shop, ""),
        "building": func.coalesce(inventory.c.building, ""),
        "floor": func.coalesce(inventory.c.floor, ""),
        "account_type": func.coalesce(types.c.account_type, ""),
    }
    if not per_account:
        dims |= {"tariff_period": cd.c.period, "day": cd.c.day, "meter": cd.c.meter,
                 "pocket": cd.c.pocket}  # fmt: skip
    shown = list(groups)
    if "account" in groups:  # an account's area, for reading (one per account)
        shown += [k for k in ("shop", "building", "floor") if k not in groups]
    subsidy = (
        cd.c.subsidy_wh
        if per_account
        else case((cd.c.pocket == Pocket.SUBSIDY.value, cd.c.wh), else_=0)
    )
    query = select(
        *(dims[k].label(k) for k in shown),
        _sum(cd.c.wh).label("wh"),
        _sum(subsidy).label("subsidy_wh"),
        _sum(cd.c.fen).label("fen"),
    ).group_by(*(dims[k] for k in shown))
    source: FromClause = cd
    if filters.by_area or {"shop", "building", "floor"} & set(shown):
        source = source.outerjoin(inventory, inventory.c.account == cd.c.account)
    if "account_type" in shown:
        source = source.outerjoin(types, types.c.id == cd.c.account)
    query = query.select_from(source).where(*filters.area(cd.c.account, inventory))
    columns = (
        *(_GROUP_COLUMNS[k] for k in shown),
        Column("wh", "用电量(Wh)", Kind.WH, total=True),
        Column("subsidy_wh", "补贴电量(Wh)", Kind.WH, total=True),
        Column("fen", "电费(元)", Kind.FEN, total=True),
    )
    return Spec("consumption", "用电报表", columns, query, tuple(groups), filters.shown())


# -- deposits -------------------------------------------------------------------------------------


def deposits(
    filters: Filters,
    *,
    operator: str | None = None,
    method: str | None = None,
    status: str | None = None,
) -> Spec:
    """Recharges created in the window, with the shop they went to: what was paid, the posted
    corrections of it, and the net booked — a posted recharge's amount plus its corrections;
    nothing for one still pending or voided (refused by the concentrator). The totals are the
    net and the corrections, so they equal the ledger's."""
    recharges, inventory = models.Recharge.__table__, _ACC.alias("inv")
    fixes = operations.Correction.__table__
    corrected = (
        select(fixes.c.payment, _sum(fixes.c.fen).label("fen"))
        .where(fixes.c.status == "posted", fixes.c.payment.is_not(None))
        .group_by(fixes.c.payment)
        .subquery("corrected")
    )
    correction = func.coalesce(corrected.c.fen, 0)
    posted = recharges.c.status == "posted"
    query = (
        select(
            recharges.c.created.label("time"),
            recharges.c.payment,
            recharges.c.account,
            *_area_columns(inventory),
            recharges.c.fen,
            correction.label("corrected_fen"),
            case((posted, recharges.c.fen + correction), else_=0).label("net_fen"),
            recharges.c.method,
            recharges.c.operator,
            recharges.c.status,
        )
        .select_from(
            recharges.outerjoin(inventory, inventory.c.account == recharges.c.account).outerjoin(
                corrected, corrected.c.payment == recharges.c.payment
            )
        )
        .where(
            recharges.c.created >= filters.window.start,
            recharges.c.created < filters.window.end,
            *filters.area(recharges.c.account, inventory),
        )
    )
    shown = filters.shown()
    for key, value, label in (("operator", operator, "操作员"), ("method", method, "方式"),
                              ("status", status, "状态")):  # fmt: skip
        if value:
            query = query.where(recharges.c[key] == value)
            shown[label] = value
    columns = (
        Column("time", "时间", Kind.TIME),
        Column("payment", "单号"),
        Column("account", "账户"),
        *_AREA,
        Column("fen", "金额(元)", Kind.FEN),
        Column("corrected_fen", "冲正(元)", Kind.FEN, total=True),
        Column("net_fen", "入账净额(元)", Kind.FEN, total=True),
        Column("method", "方式"),
        Column("operator", "操作员"),
        Column("status", "状态"),
    )
    return Spec("deposits", "充值明细", columns, query, ("time", "payment"), shown)


# -- subsidies ------------------------------------------------------------------------------------


def _owner(pocket_column: Any, pocket: Pocket) -> ColumnElement[str]:
    """The owner of a pocket id column ('A0001:subsidy' → 'A0001'), in SQL."""
    return func.substr(pocket_column, 1, func.length(pocket_column) - len(pocket.value) - 1)


def subsidies(filters: Filters) -> Spec:
    """Subsidy Wh issued, used and expired per account in the window."""
    suffix = f"%:{Pocket.SUBSIDY.value}"
    window = (_LE.c.time >= filters.window.start, _LE.c.time < filters.window.end)
    zero = literal(0, type_=_CD.c.wh.type)
    issued = select(
        _owner(_LE.c.credit, Pocket.SUBSIDY).label("account"),
        _LE.c.amount.label("issued"), zero.label("used"), zero.label("expired"),
    ).where(_LE.c.code == Code.SUBSIDY_ISSUE.value, *window, _LE.c.credit.like(suffix),
            _LE.c.kind.in_(("single", "post")))  # fmt: skip
    expired = select(
        _owner(_LE.c.debit, Pocket.SUBSIDY).label("account"),
        zero.label("issued"), zero.label("used"), _LE.c.amount.label("expired"),
    ).where(_LE.c.code == Code.SUBSIDY_EXPIRE.value, *window, _LE.c.debit.like(suffix),
            _LE.c.kind.in_(("single", "post")))  # fmt: skip
    rows = rollup(filters.window, by_day=False, pocket=Pocket.SUBSIDY.value)
    used = select(rows.c.account, zero.label("issued"), rows.c.wh.label("used"),
                  zero.label("expired"))  # fmt: skip
    moves = union_all(issued, used, expired).subquery("moves")
    inventory = _ACC.alias("inv")
    area = _area_columns(inventory)
    query = (
        select(
            moves.c.account,
            *area,
            _sum(moves.c.issued).label("issued_wh"),
            _sum(moves.c.used).label("used_wh"),
            _sum(moves.c.expired).label("expired_wh"),
        )
        .select_from(moves.outerjoin(inventory, inventory.c.account == moves.c.account))
        .where(*filters.area(moves.c.account, inventory))
        .group_by(moves.c.account, *(c.element for c in area))
    )
    columns = (
        Column("account", "账户"),
        *_AREA,
        Column("issued_wh", "发放(Wh)", Kind.WH, total=True),
        Column("used_wh", "使用(Wh)", Kind.WH, total=True),
        Column("expired_wh", "清零(Wh)", Kind.WH, total=True),
    )
    return Spec("subsidies", "补贴报表", columns, query, ("account",), filters.shown())


# -- refunds --------------------------------------------------------------------------------------

_REFUND_LABELS = {
    "time": Column("time", "退款时间", Kind.TIME),
    "refund": Column("refund", "退款单号"),
    "account": Column("account", "账户"),
    "shop": Column("shop", "商铺"),
    "building": Column("building", "楼栋"),
    "floor": Column("floor", "楼层"),
    "method": Column("method", "退款方式"),
    "status": Column("status", "状态"),
    "fen": Column("fen", "金额(元)", Kind.FEN, total=True),
    "operator": Column("operator", "经办人"),
    "paid_by": Column("paid_by", "付款人"),
    "closed": Column("closed", "完成时间", Kind.TIME),
    "transfer": Column("transfer", "交易号"),
}


def refunds(
    filters: Filters,
    *,
    method: str | None = None,
    status: str | None = None,
    columns: tuple[str, ...] = REFUND_COLUMNS,
    title: str = "退款清单",
) -> Spec:
    """Refunds the edges reserved in the window (their pending `refund` entries), with the
    cloud's refund record where there is one (method, operator, payout). Status is the
    record's; without one, the ledger's: reserved, paid (posted) or cancelled (voided)."""
    for column in columns:
        choose(column, REFUND_COLUMNS, "refund column")
    records = operations.Refund.__table__
    settle, inventory = _LE.alias("settle"), _ACC.alias("inv")
    account = _owner(_LE.c.debit, Pocket.PREPAID)
    ledger_status = case(
        (settle.c.kind == "post", "paid"), (settle.c.kind == "void", "cancelled"),
        else_="reserved",
    )  # fmt: skip
    refs_refund = func.coalesce(records.c.id, _LE.c.transfer_id)
    picked = {
        "time": _LE.c.time.label("time"),
        "refund": refs_refund.label("refund"),
        "account": account.label("account"),
        "shop": func.coalesce(inventory.c.shop, "").label("shop"),
        "building": func.coalesce(inventory.c.building, "").label("building"),
        "floor": func.coalesce(inventory.c.floor, "").label("floor"),
        "method": func.coalesce(records.c.method, "").label("method"),
        "status": func.coalesce(records.c.status, ledger_status).label("status"),
        "fen": _LE.c.amount.label("fen"),
        "operator": func.coalesce(records.c.operator, "").label("operator"),
        "paid_by": func.coalesce(records.c.paid_by, "").label("paid_by"),
        "closed": func.coalesce(records.c.closed, settle.c.time).label("closed"),
        "transfer": _LE.c.transfer_id.label("transfer"),
    }
    source = (
        _LE.outerjoin(records, records.c.pending_transfer == _LE.c.transfer_id)
        .outerjoin(settle, and_(settle.c.code == Code.REFUND.value,
                                settle.c.pending_id == _LE.c.transfer_id,
                                settle.c.kind.in_(("post", "void"))))
        .outerjoin(inventory, inventory.c.account == account)
    )  # fmt: skip
    # Every column is selected, so sorting and filters may use any; the template picks which
    # are shown (`Spec.columns`).
    inner = (
        select(*picked.values())
        .select_from(source)
        .where(
            _LE.c.code == Code.REFUND.value,
            _LE.c.kind == "pending",
            _LE.c.time >= filters.window.start,
            _LE.c.time < filters.window.end,
            *filters.area(account, inventory),
        )
        .subquery("refund_rows")
    )
    query = select(*(inner.c[k] for k in REFUND_COLUMNS))
    shown = filters.shown()
    if method:
        query = query.where(inner.c.method == method)
        shown["退款方式"] = method
    if status:
        query = query.where(inner.c.status == status)
        shown["状态"] = status
    chosen = tuple(_REFUND_LABELS[k] for k in columns)
    return Spec("refunds", title, chosen, query, ("time", "transfer"), shown)


# -- meters ---------------------------------------------------------------------------------------


def expected_reads(window: Window, now: dt.datetime) -> int:
    """15-minute reads a meter owes in the window, up to `now`."""
    end = min(window.end, max(now, window.start))
    return max(0, math.floor((end - window.start) / READ_INTERVAL))


def meters(
    filters: Filters, now: dt.datetime, *, node: str | None = None, relay: int | None = None
) -> Spec:
    """Each meter's last state (relay, register, last reading) and its read success rate in
    the window: readings stored there over the reads owed every 15 minutes until `now`."""
    meters_t, readings, inventory = (
        models.MeterState.__table__,
        models.Reading.__table__,
        _ACC.alias(),
    )
    expected = expected_reads(filters.window, now)
    counted = (
        select(readings.c.node, readings.c.meter, func.count().label("reads"))
        .where(readings.c.time >= filters.window.start, readings.c.time < filters.window.end)
        .group_by(readings.c.node, readings.c.meter)
        .subquery("counted")
    )
    reads = func.coalesce(counted.c.reads, 0)
    rate = (
        case((reads >= expected, 1.0), else_=cast(reads, Float) / expected)
        if expected
        else literal(None, type_=Float)
    )
    query = (
        select(
            meters_t.c.node,
            meters_t.c.address.label("meter"),
            meters_t.c.account,
            *_area_columns(inventory),
            meters_t.c.protocol,
            meters_t.c.relay,
            meters_t.c.energy_wh,
            meters_t.c.last_reading,
            reads.label("reads"),
            literal(expected, BigInteger).label("expected"),
            rate.label("read_rate"),
        )
        .select_from(
            meters_t.outerjoin(inventory, inventory.c.account == meters_t.c.account).outerjoin(
                counted,
                and_(counted.c.node == meters_t.c.node, counted.c.meter == meters_t.c.address),
            )
        )
        .where(*filters.area(meters_t.c.account, inventory))
    )
    shown = filters.shown()
    if node:
        query = query.where(meters_t.c.node == node)
        shown["集中器"] = node
    if relay is not None:
        query = query.where(meters_t.c.relay == relay)
        shown["继电器"] = "合闸" if relay else "分闸"
    columns = (
        Column("node", "集中器"),
        Column("meter", "电表"),
        Column("account", "账户"),
        *_AREA,
        Column("protocol", "规约"),
        Column("relay", "继电器", Kind.INT),
        Column("energy_wh", "电表读数(Wh)", Kind.WH),
        Column("last_reading", "最后抄表", Kind.TIME),
        Column("reads", "抄读次数", Kind.INT, total=True),
        Column("expected", "应抄次数", Kind.INT, total=True),
        Column("read_rate", "抄读成功率", Kind.RATE),
    )
    return Spec("meters", "电表状态", columns, query, ("node", "meter"), shown)


def local_day(value: dt.datetime) -> dt.date:
    return value.astimezone(SITE_ZONE).date()
