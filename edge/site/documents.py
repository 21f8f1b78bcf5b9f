"""The configuration documents (tinydb) → typed values: meters, shops, accounts, tariffs, rules.

Document shapes (each has a string `id`):

    meters    {"id": "000000000001", "bus": "rs485-1", "protocol": "dlt645", "shop": "B1-1F-001",
               "account": "A0001", "multiplier": 1, "max_power_w": 11000, "profile": "shop",
               "model": "voltbook-sim"}  (model: selects the meter's vendor maps, e.g. the
               malicious-load window it judges itself, `edge.drivers.dlt645_vendor`)
    shops     {"id": "B1-1F-001", "building": "B1", "floor": "1F", "category": "retail",
               "area_m2": 32.5}
    accounts  {"id": "A0001", "type": "merchant", "credit_limit_fen": 0, "keep_power": false,
               "tariff": "commercial", "water_tariff": "water", "arriving": "M1"}
              (arriving, optional: the move bringing the tenant here, an operation reference)
    tariffs   {"id": "commercial", "kind": "flat", "price": 8365}
              {"id": "tou", "kind": "tou", "prices": {"peak": 11000, "flat": 8365, ...},
               "ranges": [["08:00", "11:00", "peak"], ...]}
              {"id": "tiered", "kind": "tiered", "tiers": [[100000, 6000], [null, 9000]]}
    rules     {"id": "billing", "tariff": "commercial", "max_power_w": 11000, "jump_margin": 1.5}
              {"id": "subsidy", "issue_day": 1, "issue_at": "00:00", "month_end": "clear",
               "carry_cap_wh": null, "by_type": {"merchant": 50000}, "by_category": {},
               "by_account": {"A0001": 60000}}  (by_account, optional, wins over the others)
              {"id": "protection", "windows": [{"min_w": 1500, "max_w": 2500, "min_pf": 0.95,
               "max_pf": 1.0}], "debounce_readings": 3, "overload_w": 10000,
               "overload_hold_s": 30, "over_voltage_v": 264, "reclose_after_s": 300, ...}
              {"id": "arrears", "mode": "at_zero", "cut_off": "10:00",
               "friendly_hours": [["20:00", "08:00"]], "holidays": ["2026-10-01"]}
              {"id": "low_balance", "alarm_at": "09:00", "below_fen": 2000, "below_days": 3,
               "below_l": 1000}
              {"id": "water", "tariff": "water", "max_flow_l_h": 2500, "jump_margin": 1.5}
              {"id": "water_subsidy", ...the shape of "subsidy", amounts and "carry_cap_l" in
               litres}

Prices are integer units of 0.0001 CNY per kWh, energy integer Wh, money integer fen. A tariff
named by the `water` rules prices water: 0.0001 CNY per m³, tier thresholds in litres. Without a
`water` rules document, water meters are read, not billed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edge.drivers.errors import DriverUsageError
from edge.drivers.registry import check_address, protocol
from edge.rules.arrears import ArrearsMode, ArrearsPolicy
from edge.rules.errors import PolicyError
from edge.rules.low_balance import LowBalancePolicy
from edge.rules.protection import LoadWindow, ProtectionPolicy
from edge.rules.subsidy import MonthEnd, SubsidyPolicy, SubsidyTable
from edge.rules.tariffs import (
    FlatTariff,
    Period,
    Tariff,
    Tier,
    TieredTariff,
    TouRange,
    TouTariff,
)
from edge.rules.times import DailyWindow
from edge.site.errors import SiteConfigError
from edge.site.fields import Fields
from edge.site.model import (
    AccountConfig,
    BillingRules,
    MeterConfig,
    Rules,
    ShopConfig,
    WaterRules,
)
from ledger.accounts import Pocket, pocket_id
from ledger.errors import InvalidValue
from ledger.signed import is_reference
from ledger.units import Price, Wh

Document = Mapping[str, Any]


def _by_id(path: Path, kind: str, documents: Iterable[Document]) -> dict[str, Document]:
    out: dict[str, Document] = {}
    for number, doc in enumerate(documents, 1):
        key = doc.get("id")
        if not isinstance(key, str) or not key:
            raise SiteConfigError(path, f"{kind} document #{number} has no text 'id'")
        if key in out:
            raise SiteConfigError(path, f"two {kind} documents have the id {key!r}")
        out[key] = doc
    return out


def parse_meter(path: Path, doc: Document) -> MeterConfig:
    f = Fields(path, f"meter {doc.get('id')!r}", doc)
    name = f.text("protocol", "dlt645")
    try:
        protocol(name)
        address = check_address(name, f.text("id"))
    except DriverUsageError as exc:
        raise SiteConfigError(path, f"meter {doc.get('id')!r}: {exc}") from None
    meter = MeterConfig(
        address=address,
        bus=f.text("bus"),
        protocol=name,
        shop=f.text("shop"),
        account=f.text("account"),
        multiplier=f.integer("multiplier", 1, low=1),
        max_power_w=f.number("max_power_w", None, low=1),
        profile=f.text("profile", None),
        model=f.text("model", None),
    )
    f.unknown(ignore=("name", "note"))
    return meter


def parse_shop(path: Path, doc: Document) -> ShopConfig:
    f = Fields(path, f"shop {doc.get('id')!r}", doc)
    shop = ShopConfig(
        id=f.text("id"),
        building=f.text("building"),
        floor=f.text("floor"),
        category=f.text("category", "general"),
        area_m2=f.number("area_m2", None, low=0),
    )
    f.unknown(ignore=("name", "note"))
    return shop


def parse_account(path: Path, doc: Document) -> AccountConfig:
    f = Fields(path, f"account {doc.get('id')!r}", doc)
    account = AccountConfig(
        id=f.text("id"),
        type=f.text("type"),
        credit_limit_fen=f.integer("credit_limit_fen", 0, low=0),
        keep_power=f.boolean("keep_power", False),
        tariff=f.text("tariff", None),
        water_tariff=f.text("water_tariff", None),
        arriving=f.text("arriving", None),
    )
    try:
        pocket_id(account.id, Pocket.PREPAID)
    except InvalidValue as exc:
        raise SiteConfigError(path, f"account {account.id!r}: {exc}") from None
    if account.arriving is not None and not is_reference(account.arriving):
        why = f"arriving must be a move reference, got {account.arriving!r}"
        raise SiteConfigError(path, f"account {account.id!r}: {why}")
    f.unknown(ignore=("name", "merchant", "note"))
    return account


def _price(f: Fields, name: str, value: object) -> Price:
    if type(value) is not int or value <= 0:
        raise f.problem(name, "a positive integer price (0.0001 CNY per kWh)", value)
    return Price(value)


def parse_tariff(path: Path, doc: Document) -> Tariff:
    f = Fields(path, f"tariff {doc.get('id')!r}", doc)
    f.text("id")
    kind = f.choice("kind", ("flat", "tou", "tiered"))
    try:
        tariff: Tariff
        if kind == "flat":
            tariff = FlatTariff(_price(f, "price", f.integer("price")))
        elif kind == "tou":
            tariff = _tou(f)
        else:
            tiers = []
            for i, tier in enumerate(f.items("tiers")):
                if not isinstance(tier, list) or len(tier) != 2:
                    raise f.problem(f"tiers[{i}]", "a pair [up_to_wh or null, price]", tier)
                up_to, price = tier
                if up_to is not None and type(up_to) is not int:
                    raise f.problem(f"tiers[{i}]", "a pair [up_to_wh or null, price]", tier)
                tiers.append(Tier(None if up_to is None else Wh(up_to), _price(f, "tiers", price)))
            tariff = TieredTariff(tuple(tiers))
    except PolicyError as exc:
        raise SiteConfigError(path, f"tariff {doc.get('id')!r}: {exc}") from None
    f.unknown(ignore=("name", "note"))
    return tariff


def _period(f: Fields, name: str, value: object) -> Period:
    try:
        return Period(str(value))
    except ValueError:
        raise f.problem(name, "one of " + ", ".join(p.value for p in Period), value) from None


def _tou(f: Fields) -> TouTariff:
    prices = f.table("prices")
    ranges = []
    for i, row in enumerate(f.items("ranges")):
        if not isinstance(row, list) or len(row) != 3:
            raise f.problem(f"ranges[{i}]", 'a triple ["08:00", "11:00", "peak"]', row)
        start, end, period = row
        ranges.append(
            TouRange(
                f.parse_time(f"ranges[{i}]", start),
                f.parse_time(f"ranges[{i}]", end),
                _period(f, f"ranges[{i}]", period),
            )
        )
    return TouTariff(
        tuple(ranges),
        tuple((_period(f, "prices", p), _price(f, f"prices.{p}", v)) for p, v in prices.items()),
    )


def _wh_table(f: Fields, name: str) -> dict[str, int]:
    table = f.table(name, {})
    for key, value in table.items():
        if type(value) is not int or value < 0:
            raise f.problem(f"{name}.{key}", "an integer Wh ≥ 0", value)
    return dict(table)


def parse_subsidy(path: Path, doc: Document, name: str = "subsidy") -> SubsidyPolicy:
    """The `subsidy` rules document (Wh), or `water_subsidy` (litres: its cap `carry_cap_l`)."""
    f = Fields(path, f"rules document {name!r}", doc)
    month_end = MonthEnd(f.choice("month_end", [m.value for m in MonthEnd], "clear"))
    policy = SubsidyPolicy(
        amount=SubsidyTable(
            by_type=_wh_table(f, "by_type"),
            by_category=_wh_table(f, "by_category"),
            by_account=_wh_table(f, "by_account"),
        ),
        issue_day=f.integer("issue_day", 1, low=1, high=31),
        issue_at=f.time_of_day("issue_at", dt.time(0, 0)),
        month_end=month_end,
        carry_cap_wh=f.integer(
            "carry_cap_l" if name == "water_subsidy" else "carry_cap_wh", None, low=0
        ),
    )
    f.unknown(ignore=("id",))
    return policy


def _windows(f: Fields) -> tuple[LoadWindow, ...]:
    out = []
    for i, raw in enumerate(f.items("windows", [])):
        w = Fields(f.path, f"{f.where} windows[{i}]", raw)
        out.append(
            LoadWindow(
                w.number("min_w", low=0),
                w.number("max_w", low=0),
                w.number("min_pf", low=0),
                w.number("max_pf", low=0),
            )
        )
        w.unknown()
    return tuple(out)


def parse_protection(path: Path, doc: Document) -> ProtectionPolicy:
    f = Fields(path, "rules document 'protection'", doc)
    base = ProtectionPolicy()
    policy = ProtectionPolicy(
        windows=_windows(f),
        judge_total=f.boolean("judge_total", True),
        judge_step=f.boolean("judge_step", True),
        debounce_readings=f.integer("debounce_readings", base.debounce_readings, low=1),
        debounce_hold=f.seconds("debounce_hold_s", None),
        overload_w=f.number("overload_w", None, low=0),
        overload_hold=f.seconds("overload_hold_s", base.overload_hold),
        over_voltage_v=f.number("over_voltage_v", None, low=0),
        over_voltage_hold=f.seconds("over_voltage_hold_s", base.over_voltage_hold),
        reclose_after=f.seconds("reclose_after_s", base.reclose_after),
        lockout_trips=f.integer("lockout_trips", base.lockout_trips, low=1),
        lockout_window=f.seconds("lockout_window_s", base.lockout_window),
    )
    f.unknown(ignore=("id",))
    return policy


def parse_arrears(path: Path, doc: Document) -> ArrearsPolicy:
    f = Fields(path, "rules document 'arrears'", doc)
    base = ArrearsPolicy()
    friendly = base.friendly_hours
    if "friendly_hours" in doc:
        friendly = tuple(
            DailyWindow(f.parse_time("friendly_hours", a), f.parse_time("friendly_hours", b))
            for a, b in (_pair(f, "friendly_hours", row) for row in f.items("friendly_hours"))
        )
    policy = ArrearsPolicy(
        mode=ArrearsMode(f.choice("mode", [m.value for m in ArrearsMode], "at_zero")),
        cut_off=f.time_of_day("cut_off", base.cut_off),
        friendly_hours=friendly,
        holidays=frozenset(f.date("holidays", d) for d in f.items("holidays", [])),
    )
    f.unknown(ignore=("id",))
    return policy


def _pair(f: Fields, name: str, row: object) -> tuple[object, object]:
    if not isinstance(row, list) or len(row) != 2:
        raise f.problem(name, 'a list of ["20:00", "08:00"] pairs', row)
    return row[0], row[1]


def parse_low_balance(path: Path, doc: Document) -> LowBalancePolicy:
    f = Fields(path, "rules document 'low_balance'", doc)
    policy = LowBalancePolicy(
        alarm_at=f.time_of_day("alarm_at", dt.time(9, 0)),
        below_fen=f.integer("below_fen", None, low=0),
        below_wh=f.integer("below_wh", None, low=0),
        below_days=f.integer("below_days", None, low=0),
        below_l=f.integer("below_l", None, low=0),
    )
    f.unknown(ignore=("id",))
    return policy


def parse_billing(path: Path, doc: Document) -> BillingRules:
    f = Fields(path, "rules document 'billing'", doc)
    rules = BillingRules(
        tariff=f.text("tariff"),
        max_power_w=f.number("max_power_w", 11_000.0, low=1),
        jump_margin=f.number("jump_margin", 1.5, low=1),
    )
    f.unknown(ignore=("id",))
    return rules


def parse_water(path: Path, doc: Document) -> WaterRules:
    f = Fields(path, "rules document 'water'", doc)
    rules = WaterRules(
        tariff=f.text("tariff"),
        max_flow_l_h=f.number("max_flow_l_h", 2500.0, low=1),
        jump_margin=f.number("jump_margin", 1.5, low=1),
    )
    f.unknown(ignore=("id",))
    return rules


_RULES = ("billing", "subsidy", "protection", "arrears", "low_balance", "water", "water_subsidy")


def parse_rules(path: Path, documents: Iterable[Document]) -> Rules:
    docs = _by_id(path, "rules", documents)
    unknown = sorted(set(docs) - set(_RULES))
    if unknown:
        raise SiteConfigError(path, f"unknown rules document {unknown[0]!r}")
    if "billing" not in docs:
        raise SiteConfigError(path, "the rules document 'billing' (which tariff) is missing")
    try:
        return Rules(
            billing=parse_billing(path, docs["billing"]),
            subsidy=parse_subsidy(path, docs.get("subsidy", {})),
            protection=parse_protection(path, docs.get("protection", {})),
            arrears=parse_arrears(path, docs.get("arrears", {})),
            low_balance=parse_low_balance(path, docs.get("low_balance", {})),
            water=parse_water(path, docs["water"]) if "water" in docs else None,
            water_subsidy=(
                parse_subsidy(path, docs["water_subsidy"], "water_subsidy")
                if "water_subsidy" in docs
                else None
            ),
        )
    except PolicyError as exc:
        raise SiteConfigError(path, f"a rules document is not usable: {exc}") from None


def parse_all(path: Path, kind: str, documents: Iterable[Document], parse: Any) -> dict[str, Any]:
    """Every document of a kind, parsed, by id (duplicates refused)."""
    return {key: parse(path, doc) for key, doc in _by_id(path, kind, documents).items()}
