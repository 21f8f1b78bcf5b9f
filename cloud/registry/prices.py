"""The price an account pays for a kWh now, as the registry says: the account's own tariff, else
its site's default (`registry_accounts.tariff`, `registry_sites.tariff`).

| tariff kind | the price now                                                            |
|-------------|--------------------------------------------------------------------------|
| `flat`      | its one price                                                            |
| `tou`       | the price of the period the minute falls in, in the site's zone          |
| `tiered`    | the price of the tier this month's use has reached                       |

Prices are integers in 0.0001 CNY/kWh (as `cloud.registry.values` checks them), so the energy a
balance buys is exact integer arithmetic: `fen × 100 / price` kWh (`wh_for`). The concentrator
bills by the same tariff (`edge/rules/tariffs.py`); this is only what a merchant is shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.registry import Account, Shop, Site, Tariff

DEFAULT_ZONE = "Asia/Shanghai"
PRICE_UNITS_PER_FEN = 100  # 1 fen = 100 × 0.0001 CNY


@dataclass(frozen=True, slots=True)
class CurrentPrice:
    tariff: str  # the tariff's code
    kind: str  # flat | tou | tiered
    price: int  # 0.0001 CNY/kWh
    period: str | None = None  # the time-of-use period (peak, flat, valley…), or None


def _minute(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _in_range(minute: int, start: int, end: int) -> bool:
    if end > start:
        return start <= minute < end
    return minute >= start or minute < end  # wraps past midnight (end 00:00 included)


def price_of(
    kind: str, definition: Mapping[str, Any], local: dt.datetime, month_wh: int
) -> tuple[int, str | None]:
    """(price, period) of a checked tariff definition at the local time `local` with
    `month_wh` used this month. A definition the registry would refuse raises `ValueError`."""
    if kind == "flat":
        return int(definition["price"]), None
    if kind == "tou":
        minute = local.hour * 60 + local.minute
        prices: Mapping[str, int] = definition["prices"]
        ranges: Sequence[Sequence[str]] = definition["ranges"]
        for start, end, period in ranges:
            if _in_range(minute, _minute(start), _minute(end)):
                return int(prices[period]), period
        raise ValueError("time-of-use ranges do not cover the day")
    if kind == "tiered":
        for up_to, price in definition["tiers"]:
            if up_to is None or month_wh < up_to:
                return int(price), None
        raise ValueError("tiers have no last (open) tier")
    raise ValueError(f"unknown tariff kind {kind!r}")


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


def current_price(
    session: Session, account: str, now: dt.datetime, month_wh: int = 0
) -> CurrentPrice | None:
    """The account's price at `now`, or None when the registry names no tariff for it (an
    account it does not know, or neither the account nor its site has one)."""
    row = session.execute(
        select(Account.tariff, Site.tariff, Site.time_zone)
        .select_from(Account)
        .outerjoin(Shop, Shop.id == Account.shop_id)
        .outerjoin(Site, Site.id == Shop.site_id)
        .where(Account.id == account)
    ).one_or_none()
    if row is None:
        return None
    own, site_default, zone = row
    code = own or site_default
    tariff = session.get(Tariff, code) if code else None
    if tariff is None:
        return None
    price, period = price_of(tariff.kind, tariff.definition, now.astimezone(_zone(zone)), month_wh)
    return CurrentPrice(tariff.code, tariff.kind, price, period)


def wh_for(fen: int, price: int) -> int:
    """The Wh that `fen` buy at `price` (0.0001 CNY/kWh), rounded down; 0 for no money."""
    if fen <= 0 or price <= 0:
        return 0
    return fen * PRICE_UNITS_PER_FEN * 1000 // price
