"""One concentrator's configuration, built from the registry and sent as a signed CONFIG command.

`build(session, node)` gives the documents `edge/site/documents.py` parses, by kind:

- `meters`: the registry meters whose node is this one (`id` = address, `bus`, `protocol`,
  `shop` = the shop's number, `account` = the account of the meter's shop, `multiplier`);
- `shops`: the shops whose node is this one and the shops of its meters (a shop served by
  another node is a problem: its account would live on two concentrators);
- `accounts`: the accounts of those shops; one an open move across concentrators is bringing here
  (requested or in transit) names it (`arriving`), so the node issues it no subsidy until that
  move's move_in brings the periods issued at the source (`cloud.operations.moves`);
- `tariffs`: the site's default tariff and every tariff an account names;
- `rules`: `billing` (the site's default tariff), and from the site's policies `subsidy` (with
  `by_account`, each account's Wh decided here by `cloud.registry.subsidy_rules`), `protection` and
  `low_balance` (the alarm rule), `arrears`.

A vacant shop (no account: its tenant moved out or was removed) keeps its place in `shops`, but
its meters are left out of `meters`: nobody is billed for them, the concentrator stops reading
them, and the one who moves in next starts from the register then. What keeps the documents from
being usable (a site without a default tariff, shops of two sites on one node, no meters) is
listed in `Built.problems`, each a `Problem`: a code and its facts, in English as `str()` (the
API's words), in the console's language through the catalogue's `cfg_problem_<code>`; a push is
refused (`Invalid`) while there are any.

**When configuration is sent: explicitly.** A registry write only *marks* the nodes it affects
(`registry_nodes.dirty`, see `cloud.registry.rows`); nothing is sent until an operator pushes:
`POST /concentrators/{node}/config` for one node, `POST /registry/push` for every marked node
(a meter moved between two concentrators marks, and so pushes, both; so does a tenant's move,
which pushes the destination itself before its move_in, see `cloud.operations.moves`). Setting
up a site takes dozens of writes; sending the whole configuration over a GPRS link after each
would waste the data plan and send half-finished registries. `GET /concentrators/{node}/config`
previews what would be sent. Each push issues `CommandKind.CONFIG` with
`{"version": n, "documents": …, "cloud_keys": …, "retired_cloud_keys": …}`; `version` is the
node's stored version plus one, so it only grows; the keys are the cloud's command keys the box
is to trust, and those it is to drop (`cloud.chains.command_keys`: a key rotation).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cloud.chains import command_keys, commands
from cloud.chains.locks import lock
from cloud.db.models import Command
from cloud.db.operations import Move
from cloud.db.registry import (
    Account,
    AlarmRule,
    ArrearsPolicy,
    Building,
    Floor,
    Meter,
    NodeConfig,
    Shop,
    Site,
    SubsidyPolicy,
    Tariff,
)
from cloud.errors import Invalid
from cloud.people import oplog
from cloud.registry.subsidy_rules import ShopFacts, account_amount
from ledger.chain import NodeKey
from ledger.signed import CommandKind

Document = dict[str, Any]
KINDS = ("meters", "shops", "accounts", "tariffs", "rules")


# What keeps a configuration from being usable, by code: the API's English (the console's words,
# Chinese and English, are the catalogue's `cfg_problem_<code>`, with the same placeholders).
PROBLEM_WORDS = {
    "several_sites": "{node} serves shops of several sites ({sites}); one site per node",
    "no_meters": "no meter is on {node}: nothing to read or bill",
    "shop_elsewhere": "a meter of shop {shop} is on {node}, the shop on {other}",
    "no_default_tariff": "site '{site}' has no default tariff (the billing rule needs one)",
}


@dataclass(frozen=True, slots=True)
class Problem:
    code: str  # a key of PROBLEM_WORDS
    facts: tuple[tuple[str, str], ...]  # its placeholders' values, in order

    @classmethod
    def of(cls, code: str, **facts: object) -> Problem:
        return cls(code, tuple((name, str(value)) for name, value in facts.items()))

    def __str__(self) -> str:
        return PROBLEM_WORDS[self.code].format(**dict(self.facts))


@dataclass(frozen=True, slots=True)
class Built:
    node: str
    documents: Mapping[str, list[Document]]
    problems: tuple[Problem, ...] = ()
    site: int | None = None


@dataclass(frozen=True, slots=True)
class Pushed:
    node: str
    version: int
    command: Command
    documents: Mapping[str, list[Document]] = field(default_factory=dict)


def _area(text: str | None) -> int | float | None:
    """The area as a JSON number for the document (the edge reads it as a number)."""
    if text is None:
        return None
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() else float(number)


def _drop_none(doc: Document) -> Document:
    return {k: v for k, v in doc.items() if v is not None}


def _places(session: Session, shops: list[Shop]) -> dict[int, tuple[str, str, str]]:
    """Shop id → (site name, building name, floor name)."""
    floors = {f.id: f for f in session.scalars(select(Floor))}
    buildings = {b.id: b for b in session.scalars(select(Building))}
    sites = {s.id: s.name for s in session.scalars(select(Site))}
    out = {}
    for shop in shops:
        floor = floors[shop.floor_id]
        building = buildings[floor.building_id]
        out[shop.id] = (sites[building.site_id], building.name, floor.name)
    return out


def build(session: Session, node: str) -> Built:
    """The configuration documents of `node` as the registry has them now."""
    problems: list[Problem] = []
    meters = list(session.scalars(select(Meter).where(Meter.node == node).order_by(Meter.address)))
    shops = list(
        session.scalars(
            select(Shop)
            .where(or_(Shop.node == node, Shop.id.in_([m.shop_id for m in meters])))
            .order_by(Shop.number)
        )
    )
    places = _places(session, shops)
    accounts = list(
        session.scalars(
            select(Account).where(Account.shop_id.in_([s.id for s in shops])).order_by(Account.id)
        )
    )
    account_of = {a.shop_id: a for a in accounts}
    shop_by_id = {s.id: s for s in shops}
    site_ids = sorted({s.site_id for s in shops})
    if len(site_ids) > 1:
        sites = ", ".join(map(str, site_ids))
        problems.append(Problem.of("several_sites", node=node, sites=sites))
    site = session.get(Site, site_ids[0]) if site_ids else None
    if not meters:
        problems.append(Problem.of("no_meters", node=node))
    for shop in shops:
        if shop.node is not None and shop.node != node:  # its account would live on two nodes
            problems.append(
                Problem.of("shop_elsewhere", shop=shop.number, node=node, other=shop.node)
            )

    meter_docs = []
    for m in meters:
        shop = shop_by_id[m.shop_id]
        account = account_of.get(shop.id)
        if account is None:  # a vacant shop
            continue
        meter_docs.append(
            {"id": m.address, "bus": m.bus, "protocol": m.protocol, "shop": shop.number,
             "account": account.id, "multiplier": m.multiplier}
        )  # fmt: skip
    shop_docs = [
        _drop_none(
            {"id": s.number, "building": places[s.id][1], "floor": places[s.id][2],
             "category": s.category, "area_m2": _area(s.area_m2)}
        )
        for s in shops
    ]  # fmt: skip
    arriving = _arriving(session, node, [a.id for a in accounts])
    account_docs = [
        _drop_none(
            {"id": a.id, "type": a.account_type, "credit_limit_fen": a.credit_limit_fen,
             "keep_power": a.keep_power, "tariff": a.tariff, "arriving": arriving.get(a.id)}
        )
        for a in accounts
    ]  # fmt: skip

    default_tariff = site.tariff if site is not None else None
    if site is not None and default_tariff is None:
        problems.append(Problem.of("no_default_tariff", site=site.name))
    codes = {a.tariff for a in accounts if a.tariff} | ({default_tariff} - {None})
    tariffs = session.scalars(select(Tariff).where(Tariff.code.in_(codes)).order_by(Tariff.code))
    tariff_docs = [
        {"id": t.code, "kind": t.kind, **t.definition, **({"name": t.name} if t.name else {})}
        for t in tariffs
    ]

    rules: list[Document] = []
    if default_tariff is not None:
        rules.append({"id": "billing", "tariff": default_tariff})
    if site is not None:
        facts = {s.id: _facts(s, places[s.id]) for s in shops}
        rules += _policies(session, site.id, accounts, facts)
    documents = {
        "meters": meter_docs,
        "shops": shop_docs,
        "accounts": account_docs,
        "tariffs": tariff_docs,
        "rules": rules,
    }
    return Built(node, documents, tuple(problems), site.id if site else None)


# `cloud.operations.states.MoveStatus` of a move whose move_in the destination has not booked
_ON_THE_WAY = ("requested", "in_transit")


def _arriving(session: Session, node: str, accounts: list[str]) -> dict[str, str]:
    """account → the open move from another node bringing it to `node`."""
    rows = session.execute(
        select(Move.account, Move.id).where(
            Move.to_node == node,
            Move.from_node != node,
            Move.status.in_(_ON_THE_WAY),
            Move.account.in_(accounts),
        )
    )
    return {account: move for account, move in rows}


def _facts(shop: Shop, place: tuple[str, str, str]) -> ShopFacts:
    site, building, floor = place
    area = Decimal(shop.area_m2) if shop.area_m2 is not None else None
    return ShopFacts(shop.number, site, building, floor, shop.category, area)


def _policies(
    session: Session, site: int, accounts: list[Account], facts: Mapping[int, ShopFacts]
) -> list[Document]:
    rules: list[Document] = []
    subsidy = session.scalars(select(SubsidyPolicy).where(SubsidyPolicy.site_id == site)).first()
    if subsidy is not None:
        by_account = {}
        for a in accounts:
            shop = facts.get(a.shop_id) if a.shop_id is not None else None
            if shop is not None:
                shop = dataclasses.replace(shop, params=dict(subsidy.rule_params))
            by_account[a.id] = account_amount(
                shop, a.account_type, subsidy.rule, subsidy.by_category, subsidy.by_type
            )
        rules.append(
            _drop_none(
                {"id": "subsidy", "issue_day": subsidy.issue_day, "issue_at": subsidy.issue_at,
                 "month_end": subsidy.month_end, "carry_cap_wh": subsidy.carry_cap_wh,
                 "by_type": dict(subsidy.by_type), "by_category": dict(subsidy.by_category),
                 "by_account": by_account}
            )
        )  # fmt: skip
    alarm = session.scalars(select(AlarmRule).where(AlarmRule.site_id == site)).first()
    if alarm is not None:
        rules.append(
            _drop_none(
                {"id": "protection", "windows": list(alarm.windows),
                 "overload_w": alarm.overload_w, "over_voltage_v": alarm.over_voltage_v}
            )
        )  # fmt: skip
        rules.append(
            _drop_none(
                {"id": "low_balance", "alarm_at": alarm.alarm_at, "below_fen": alarm.below_fen,
                 "below_days": alarm.below_days}
            )
        )  # fmt: skip
    arrears = session.scalars(select(ArrearsPolicy).where(ArrearsPolicy.site_id == site)).first()
    if arrears is not None:
        rules.append(
            {"id": "arrears", "mode": arrears.mode, "cut_off": arrears.cut_off,
             "friendly_hours": list(arrears.friendly_hours), "holidays": list(arrears.holidays)}
        )  # fmt: skip
    return rules


def state(session: Session, node: str) -> NodeConfig:
    """The node's configuration record (version 0, marked changed, when nothing was sent)."""
    row = session.get(NodeConfig, node)
    if row is None:
        lock(session, node)  # NotFound for an unknown node
        row = NodeConfig(node=node, version=0, dirty=True)
        session.add(row)
        session.flush()
    return row


def push(
    session: Session, node: str, *, key: NodeKey, now: dt.datetime, actor: oplog.Actor
) -> Pushed:
    """Issue the node's configuration as its next version; Invalid while it has problems."""
    built = build(session, node)
    if built.problems:
        raise Invalid(
            f"the configuration of {node} is not usable: " + "; ".join(map(str, built.problems))
        )
    record = state(session, node)
    before = {"version": record.version}
    version = record.version + 1
    command = commands.issue(
        session,
        node,
        CommandKind.CONFIG,
        {
            "version": version,
            "documents": dict(built.documents),
            **command_keys.config_args(session, key),
        },
        key=key,
        now=now,
        operator=actor.user,
    )
    record.version, record.dirty, record.pushed, record.command_id = version, False, now, command.id
    session.flush()
    after = {"version": version, "command": command.id}
    oplog.record(session, actor, "config.push", f"node:{node}", before, after, now)
    return Pushed(node, version, command, built.documents)


def marked(session: Session) -> list[str]:
    """The nodes whose configuration changed since it was last sent."""
    return list(
        session.scalars(
            select(NodeConfig.node).where(NodeConfig.dirty.is_(True)).order_by(NodeConfig.node)
        )
    )
