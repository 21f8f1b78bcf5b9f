"""The kinds of registry rows (`cloud.registry.rows.Entity`): what each references, what refers to
it, how a row is checked, how lists filter and sort, and which nodes' configuration it feeds.

Which concentrators a row feeds (their configuration is marked changed when it changes):

| row                 | nodes                                                            |
|---------------------|------------------------------------------------------------------|
| site, building, floor | the nodes of every shop under it                               |
| shop                | its own node and the nodes of its meters                         |
| account             | the nodes of its shop                                            |
| meter               | its node                                                         |
| tariff              | the nodes of the accounts it bills and of the sites it is default of |
| subsidy, alarm, arrears policy | the nodes of its site                                 |
| merchant, account type | none (the documents carry neither)                            |
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from cloud.db.models import Concentrator
from cloud.db.registry import (
    Account,
    AccountType,
    AlarmRule,
    ArrearsPolicy,
    Building,
    Floor,
    Merchant,
    Meter,
    Shop,
    Site,
    SubsidyPolicy,
    Tariff,
)
from cloud.errors import Invalid, NotFound
from cloud.keys import CLOUD_NODE
from cloud.registry import values as check
from cloud.registry.holdings import account_kept
from cloud.registry.rows import Entity, Ref, Referrer, Values
from cloud.registry.subsidy_rules import subsidy_rule
from ledger.accounts import Pocket, pocket_id
from ledger.errors import InvalidValue

# -- which nodes ------------------------------------------------------------------------------


def nodes_of_shops(session: Session, shops: Select[Any] | Iterable[int]) -> set[str]:
    """The nodes of these shops and of their meters."""
    ids = shops if isinstance(shops, Select) else list(shops)
    own = session.scalars(select(Shop.node).where(Shop.id.in_(ids), Shop.node.is_not(None)))
    metered = session.scalars(
        select(Meter.node).where(Meter.shop_id.in_(ids), Meter.node.is_not(None))
    )
    return {n for n in [*own, *metered] if n is not None}


def nodes_of_sites(session: Session, sites: Select[Any] | Iterable[int]) -> set[str]:
    ids = sites if isinstance(sites, Select) else list(sites)
    return nodes_of_shops(session, select(Shop.id).where(Shop.site_id.in_(ids)))


def _tariff_nodes(session: Session, row: Tariff) -> set[str]:
    shops = select(Account.shop_id).where(Account.tariff == row.code)
    sites = select(Site.id).where(Site.tariff == row.code)
    return nodes_of_shops(session, shops) | nodes_of_sites(session, sites)


def _site_nodes(session: Session, row: Any) -> set[str]:
    return nodes_of_sites(session, [row.site_id])


# -- filters -----------------------------------------------------------------------------------


def _shops(*where: ColumnElement[bool]) -> Select[Any]:
    return select(Shop.id).where(*where)


def _in_building(building: int) -> ColumnElement[bool]:
    return Shop.floor_id.in_(select(Floor.id).where(Floor.building_id == building))


SHOP_FILTERS = {
    "site": lambda v: Shop.site_id == v,
    "building": _in_building,
    "floor": lambda v: Shop.floor_id == v,
    "category": lambda v: Shop.category == v,
    "node": lambda v: Shop.node == v,
}


def _through_shop(column: Any) -> dict[str, Any]:
    """Filters of rows that belong to a shop (accounts, meters), by the shop's place."""
    return {
        "site": lambda v: column.in_(_shops(Shop.site_id == v)),
        "building": lambda v: column.in_(_shops(_in_building(v))),
        "floor": lambda v: column.in_(_shops(Shop.floor_id == v)),
        "category": lambda v: column.in_(_shops(Shop.category == v)),
        "shop": lambda v: column == v,
    }


# -- checks ------------------------------------------------------------------------------------


def _site(session: Session, values: Values) -> None:
    values["time_zone"] = check.zone(values["time_zone"])


def _not_the_cloud(values: Values) -> None:
    if values.get("node") == CLOUD_NODE:  # the cloud's own chain has a row, but is no node
        raise NotFound(f"concentrator {CLOUD_NODE!r} does not exist")


def _shop(session: Session, values: Values) -> None:
    _not_the_cloud(values)
    floor = session.get(Floor, values["floor_id"])
    building = session.get(Building, floor.building_id) if floor else None
    if building is None:
        raise Invalid(f"floor {values['floor_id']!r} is in no building")
    values["site_id"] = building.site_id  # the number is unique per site: keep it by the row
    values["area_m2"] = check.area(values.get("area_m2"))


def _account(session: Session, values: Values) -> None:
    try:
        pocket_id(values["id"], Pocket.PREPAID)
    except InvalidValue as exc:
        raise Invalid(f"account id {values['id']!r}: {exc}") from None


def _meter(session: Session, values: Values) -> None:
    _not_the_cloud(values)
    values["address"] = check.meter_address(values["protocol"], values["address"])
    medium = check.PROTOCOLS[values["protocol"]].kind
    if values.get("kind") not in (None, medium):
        raise Invalid(f"a {values['protocol']} meter measures {medium}, not {values['kind']}")
    values["kind"] = medium


SHAPE = ("price", "prices", "ranges", "tiers")


def _tariff(session: Session, values: Values) -> None:
    shape = {name: values.pop(name) for name in SHAPE if name in values}
    given = {name: value for name, value in shape.items() if value is not None}
    values["definition"] = check.tariff(values["kind"], given or values.get("definition") or {})


def _subsidy(session: Session, values: Values) -> None:
    if values.get("rule") is not None:
        subsidy_rule(values["rule"])
    check.time_of_day(values["issue_at"], "issue_at")
    if values.get("carry_cap_wh") is not None and values["month_end"] != "carry_over":
        raise Invalid("carry_cap_wh needs month_end carry_over")
    values["rule_params"] = values.get("rule_params") or {}


def _alarm(session: Session, values: Values) -> None:
    check.time_of_day(values["alarm_at"], "alarm_at")
    for i, w in enumerate(values.get("windows") or []):
        if not (w["min_w"] <= w["max_w"] and w["min_pf"] <= w["max_pf"]):
            raise Invalid(f"windows[{i}]: min_w ≤ max_w and min_pf ≤ max_pf, got {w}")
    values["windows"] = values.get("windows") or []


def _arrears(session: Session, values: Values) -> None:
    check.time_of_day(values["cut_off"], "cut_off")
    for pair in values.get("friendly_hours") or []:
        if len(pair) != 2:
            raise Invalid('friendly_hours must be ["20:00", "08:00"] pairs')
        for value in pair:
            check.time_of_day(value, "friendly_hours")
    values["friendly_hours"] = values.get("friendly_hours") or []
    values["holidays"] = sorted({check.day(d, "holidays") for d in values.get("holidays") or []})


# -- the entities ------------------------------------------------------------------------------

SITE_REF = Ref("site_id", Site, "site")
POLICY_FILTERS = {"site": lambda model: lambda v: model.site_id == v}

SITES = Entity(
    "site",
    "sites",
    Site,
    "id",
    refs=(Ref("tariff", Tariff, "tariff"),),
    referrers=(
        Referrer(Building, "site_id", "building"),
        Referrer(Shop, "site_id", "shop"),
        Referrer(SubsidyPolicy, "site_id", "subsidy policy"),
        Referrer(AlarmRule, "site_id", "alarm rule"),
        Referrer(ArrearsPolicy, "site_id", "arrears policy"),
    ),
    unique=(("name",),),
    prepare=_site,
    nodes=lambda session, row: nodes_of_sites(session, [row.id]),
    sorts=("id", "name"),
)
BUILDINGS = Entity(
    "building",
    "buildings",
    Building,
    "id",
    refs=(SITE_REF,),
    referrers=(Referrer(Floor, "building_id", "floor"),),
    unique=(("site_id", "name"),),
    nodes=lambda session, row: nodes_of_shops(session, _shops(_in_building(row.id))),
    filters={"site": lambda v: Building.site_id == v},
    sorts=("id", "name"),
)
FLOORS = Entity(
    "floor",
    "floors",
    Floor,
    "id",
    refs=(Ref("building_id", Building, "building"),),
    referrers=(Referrer(Shop, "floor_id", "shop"),),
    unique=(("building_id", "name"),),
    nodes=lambda session, row: nodes_of_shops(session, _shops(Shop.floor_id == row.id)),
    filters={
        "site": lambda v: Floor.building_id.in_(select(Building.id).where(Building.site_id == v)),
        "building": lambda v: Floor.building_id == v,
    },
    sorts=("id", "name"),
)
SHOPS = Entity(
    "shop",
    "shops",
    Shop,
    "id",
    refs=(Ref("floor_id", Floor, "floor"), Ref("node", Concentrator, "concentrator")),
    referrers=(Referrer(Account, "shop_id", "account"), Referrer(Meter, "shop_id", "meter")),
    unique=(("site_id", "number"),),
    prepare=_shop,
    nodes=lambda session, row: nodes_of_shops(session, [row.id]),
    filters=SHOP_FILTERS,
    sorts=("id", "number", "category", "node"),
)
MERCHANTS = Entity(
    "merchant",
    "merchants",
    Merchant,
    "id",
    referrers=(Referrer(Account, "merchant_id", "account"),),
    filters={"name": lambda v: Merchant.name == v},
    sorts=("id", "name"),
    private=("id_number",),
)
ACCOUNT_TYPES = Entity(
    "account_type",
    "account-types",
    AccountType,
    "code",
    referrers=(Referrer(Account, "account_type", "account"),),
    sorts=("code", "name"),
)
TARIFFS = Entity(
    "tariff",
    "tariffs",
    Tariff,
    "code",
    referrers=(Referrer(Account, "tariff", "account"), Referrer(Site, "tariff", "site")),
    prepare=_tariff,
    nodes=_tariff_nodes,
    filters={"kind": lambda v: Tariff.kind == v},
    sorts=("code", "name", "kind"),
)
ACCOUNTS = Entity(
    "account",
    "accounts",
    Account,
    "id",
    refs=(
        Ref("merchant_id", Merchant, "merchant"),
        Ref("shop_id", Shop, "shop"),
        Ref("account_type", AccountType, "account type"),
        Ref("tariff", Tariff, "tariff"),
    ),
    unique=(("shop_id",),),
    prepare=_account,
    keeps=account_kept,
    nodes=lambda session, row: nodes_of_shops(session, [row.shop_id] if row.shop_id else []),
    filters={
        **_through_shop(Account.shop_id),
        "merchant": lambda v: Account.merchant_id == v,
        "node": lambda v: Account.shop_id.in_(_shops(Shop.node == v)),
        "account_type": lambda v: Account.account_type == v,
    },
    sorts=("id", "merchant_id", "account_type", "credit_limit_fen"),
)
METERS = Entity(
    "meter",
    "meters",
    Meter,
    "id",
    refs=(Ref("shop_id", Shop, "shop"), Ref("node", Concentrator, "concentrator")),
    unique=(("node", "address"),),
    prepare=_meter,
    nodes=lambda session, row: {row.node} if row.node else set(),
    filters={
        **_through_shop(Meter.shop_id),
        "node": lambda v: Meter.node == v,
        "kind": lambda v: Meter.kind == v,
    },
    sorts=("id", "address", "node", "bus", "protocol"),
)
SUBSIDY_POLICIES = Entity(
    "subsidy_policy",
    "subsidy-policies",
    SubsidyPolicy,
    "id",
    refs=(SITE_REF,),
    unique=(("site_id",),),
    prepare=_subsidy,
    nodes=_site_nodes,
    filters={"site": POLICY_FILTERS["site"](SubsidyPolicy)},
    sorts=("id", "site_id"),
)
ALARM_RULES = Entity(
    "alarm_rule",
    "alarm-rules",
    AlarmRule,
    "id",
    refs=(SITE_REF,),
    unique=(("site_id",),),
    prepare=_alarm,
    nodes=_site_nodes,
    filters={"site": POLICY_FILTERS["site"](AlarmRule)},
    sorts=("id", "site_id"),
)
ARREARS_POLICIES = Entity(
    "arrears_policy",
    "arrears-policies",
    ArrearsPolicy,
    "id",
    refs=(SITE_REF,),
    unique=(("site_id",),),
    prepare=_arrears,
    nodes=_site_nodes,
    filters={"site": POLICY_FILTERS["site"](ArrearsPolicy)},
    sorts=("id", "site_id"),
)
