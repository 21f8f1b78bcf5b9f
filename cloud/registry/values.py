"""The values of the registry checked the way the concentrator will check them: meter protocols
and addresses, tariff shapes, times of day, dates, areas and time zones.

The edge refuses a configuration document it cannot use (`edge/site/documents.py`); the cloud
refuses the same value when the operator enters it, with `Invalid` (422), so a registry that
was accepted always builds documents the edge accepts. The cloud does not import the edge: the
rules are restated here as data, and `tests/cloud/registry/test_site_config.py` holds them equal.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud.errors import Invalid


@dataclass(frozen=True, slots=True)
class ProtocolRow:
    name: str
    kind: str  # electricity | water
    addressing: str  # dlt645 | cjt188 | modbus


# The edge's `edge.drivers.registry.PROTOCOLS`, as the registry needs it.
PROTOCOLS: Mapping[str, ProtocolRow] = {
    p.name: p
    for p in (
        ProtocolRow("dlt645", "electricity", "dlt645"),
        ProtocolRow("dlt645-1997", "electricity", "dlt645"),
        ProtocolRow("cjt188", "water", "cjt188"),
        ProtocolRow("sdm120", "electricity", "modbus"),
        ProtocolRow("sdm630", "electricity", "modbus"),
        ProtocolRow("ddsu666", "electricity", "modbus"),
    )
}
ADDRESSES: Mapping[str, tuple[re.Pattern[str], str]] = {
    "dlt645": (re.compile(r"[0-9]{1,12}"), "up to 12 digits"),
    "cjt188": (re.compile(r"[0-9]{14}"), "14 digits"),
    "modbus": (re.compile(r"0*([1-9]|[1-9][0-9]|1[0-9][0-9]|2[0-3][0-9]|24[0-7])"), "1..247"),
}
PERIODS = ("sharp", "peak", "flat", "valley")
TARIFF_KINDS = ("flat", "tou", "tiered")
_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
DAY_MINUTES = 24 * 60


def meter_address(protocol: str, address: str) -> str:
    """`address` as the edge normalises it (DL/T 645 padded to 12 digits, Modbus as a number)."""
    row = PROTOCOLS.get(protocol)
    if row is None:
        raise Invalid(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    pattern, rule = ADDRESSES[row.addressing]
    if not pattern.fullmatch(address):
        raise Invalid(f"a {protocol} meter address must be {rule}, got {address!r}")
    if row.addressing == "dlt645":
        return address.rjust(12, "0")
    if row.addressing == "modbus":
        return str(int(address))
    return address


def time_of_day(value: str, what: str) -> int:
    """Minutes after midnight of "HH:MM"."""
    if not _TIME.fullmatch(value):
        raise Invalid(f"{what} must be a time of day like 09:00, got {value!r}")
    return int(value[:2]) * 60 + int(value[3:])


def day(value: str, what: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise Invalid(f"{what} must be a date like 2026-10-01, got {value!r}") from None


def area(value: str | int | None) -> str | None:
    """An area in m² as decimal text ("32.5"): ≥ 0, at most 2 decimals, no float."""
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise Invalid(f"area_m2 must be an integer or a decimal string, got {value!r}") from None
    if not number.is_finite() or number < 0 or number != number.quantize(Decimal("0.01")):
        raise Invalid(f"area_m2 must be ≥ 0 with at most 2 decimals, got {value!r}")
    if number >= 10**8:
        raise Invalid(f"area_m2 {value!r} is not an area")
    return format(number.normalize(), "f")


def zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"time_zone must be an IANA zone like Asia/Shanghai, got {name!r}") from None
    return name


def _price(value: object, what: str) -> int:
    if type(value) is not int or not 0 < value < 10**9:
        raise Invalid(f"{what} must be a positive integer price (0.0001 CNY/kWh), got {value!r}")
    return value


def _minutes(start: int, end: int) -> list[tuple[int, int]]:
    """The spans of a daily window, wrapping past midnight when end <= start."""
    if end > start:
        return [(start, end)]
    return [(start, DAY_MINUTES), (0, end)] if end else [(start, DAY_MINUTES)]


def tariff(kind: str, definition: Mapping[str, Any]) -> dict[str, Any]:
    """The definition of a tariff of `kind`, checked: flat `{price}`, tou `{prices, ranges}`,
    tiered `{tiers}` (see `edge/site/documents.py`)."""
    if kind == "flat":
        _only(definition, {"price"}, kind)
        return {"price": _price(definition.get("price"), "price")}
    if kind == "tiered":
        _only(definition, {"tiers"}, kind)
        return {"tiers": _tiers(definition.get("tiers"))}
    if kind == "tou":
        _only(definition, {"prices", "ranges"}, kind)
        return _tou(definition.get("prices"), definition.get("ranges"))
    raise Invalid(f"kind must be one of {', '.join(TARIFF_KINDS)}, got {kind!r}")


def _only(definition: Mapping[str, Any], names: set[str], kind: str) -> None:
    extra = sorted(set(definition) - names)
    if extra:
        raise Invalid(f"a {kind} tariff has no field {extra[0]!r} (it has {', '.join(names)})")


def _tiers(tiers: object) -> list[list[int | None]]:
    shape = "tiers must be a list of [up_to_wh, price] pairs, the last with up_to_wh null"
    if not isinstance(tiers, list) or not tiers:
        raise Invalid(shape)
    out: list[list[int | None]] = []
    below = 0
    for i, tier in enumerate(tiers):
        if not isinstance(tier, list) or len(tier) != 2:
            raise Invalid(shape)
        up_to, price = tier
        last = i == len(tiers) - 1
        if last and up_to is not None:
            raise Invalid(shape)
        if not last and (type(up_to) is not int or up_to <= below or up_to > 2**53):
            raise Invalid("tier thresholds must be integer Wh, strictly ascending")
        below = up_to if up_to is not None else below
        out.append([up_to, _price(price, f"tiers[{i}] price")])
    return out


def _tou(prices: object, ranges: object) -> dict[str, Any]:
    if not isinstance(prices, Mapping) or not prices:
        raise Invalid(f"prices must be an object of period → price, periods {', '.join(PERIODS)}")
    for period in prices:
        if period not in PERIODS:
            raise Invalid(f"prices: {period!r} is not a period ({', '.join(PERIODS)})")
    checked_prices = {p: _price(v, f"prices.{p}") for p, v in prices.items()}
    if not isinstance(ranges, list) or not ranges:
        raise Invalid('ranges must be a list of ["08:00", "11:00", "peak"] triples')
    spans: list[tuple[int, int]] = []
    checked_ranges: list[Sequence[str]] = []
    for i, row in enumerate(ranges):
        if not isinstance(row, list) or len(row) != 3 or not all(isinstance(x, str) for x in row):
            raise Invalid(f'ranges[{i}] must be a triple like ["08:00", "11:00", "peak"]')
        start, end, period = row
        if period not in checked_prices:
            raise Invalid(f"ranges[{i}]: period {period!r} has no price")
        spans += _minutes(time_of_day(start, f"ranges[{i}]"), time_of_day(end, f"ranges[{i}]"))
        checked_ranges.append([start, end, period])
    edge = 0
    for start, end in sorted(spans):
        if start != edge:
            gap = "a gap" if start > edge else "an overlap"
            at = min(start, edge)
            raise Invalid(f"time-of-use ranges have {gap} at {at // 60:02d}:{at % 60:02d}")
        edge = end
    if edge != DAY_MINUTES:
        raise Invalid("time-of-use ranges must cover the whole day")
    return {"prices": checked_prices, "ranges": checked_ranges}
