"""Tariffs and the exact cost of an interval's energy (docs/architecture.md §4).

Three shapes of tariff, all priced in `Price` (0.0001 CNY per kWh, always > 0):

- `FlatTariff`: one price.
- `TouTariff` (time of use): a table of daily wall-clock ranges, each in a period (sharp, peak,
  flat, valley), and a price per period. The table must cover the day exactly once.
- `TieredTariff`: the price depends on how much the account has used this calendar month; each
  tier runs up to a threshold in Wh (the last has none).

`price_energy` turns an interval's energy into `CostPart`s (Wh at one price) whose energies sum
to the interval's energy exactly, in the order the energy was used: chronological for time of
use, ascending tiers for tiered. The consumption rule pays the parts front first (subsidy first),
so the order is part of the contract.

Time of use is attributed from the meter's own per-tariff registers when they are given (the
meter switches tariff on its own clock, so it knows best), otherwise by the share of the
interval's time spent in each period. Either way the interval's *total* register delta is what is
split, by largest remainder, so the parts always sum to it even when the per-tariff registers
round differently from the total register.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from edge.rules.errors import InputError, PolicyError
from edge.rules.times import DAY_SECONDS, DailyWindow, require_aware
from ledger.units import ExactCost, Price, Wh, exact_cost

_MICROSECOND = dt.timedelta(microseconds=1)


class Period(StrEnum):
    SHARP = "sharp"  # 尖
    PEAK = "peak"  # 峰
    FLAT = "flat"  # 平
    VALLEY = "valley"  # 谷


# DL/T 645 meters number their tariff registers 1..4 as sharp, peak, flat, valley.
DLT645_TARIFF_ORDER: tuple[Period, ...] = (Period.SHARP, Period.PEAK, Period.FLAT, Period.VALLEY)


def _check_price(price: int, what: str) -> Price:
    if type(price) is not int or price <= 0:
        raise PolicyError(f"{what} must be a positive integer Price, got {price!r}")
    return Price(price)


@dataclass(frozen=True, slots=True)
class CostPart:
    """`energy` Wh at `price`; `label` names the period or tier for statements."""

    energy: Wh
    price: Price
    label: str

    @property
    def exact(self) -> ExactCost:
        return exact_cost(self.energy, self.price)


@dataclass(frozen=True, slots=True)
class FlatTariff:
    price: Price

    def __post_init__(self) -> None:
        _check_price(self.price, "flat price")


@dataclass(frozen=True, slots=True)
class TouRange:
    """Every day from `start` to `end` (wrapping past midnight if `end <= start`) is `period`."""

    start: dt.time
    end: dt.time
    period: Period

    @property
    def window(self) -> DailyWindow:
        return DailyWindow(self.start, self.end)


@dataclass(frozen=True, slots=True)
class TouTariff:
    ranges: tuple[TouRange, ...]
    prices: tuple[tuple[Period, Price], ...]
    # Which period each of the meter's tariff registers (1..n) counts.
    meter_order: tuple[Period, ...] = DLT645_TARIFF_ORDER

    def __post_init__(self) -> None:
        spans = sorted(span for r in self.ranges for span in r.window.spans())
        edge = 0
        for start, end in spans:
            if start != edge:
                problem = "a gap" if start > edge else "an overlap"
                raise PolicyError(f"time-of-use ranges have {problem} at second {min(start, edge)}")
            edge = end
        if edge != DAY_SECONDS:
            raise PolicyError("time-of-use ranges do not reach the end of the day")
        priced = dict(self.prices)
        if len(priced) != len(self.prices):
            raise PolicyError("a time-of-use period is priced twice")
        for period, price in self.prices:
            _check_price(price, f"{period} price")
        for r in self.ranges:
            if r.period not in priced:
                raise PolicyError(f"time-of-use period {r.period} has no price")

    def price_of(self, period: Period) -> Price:
        return dict(self.prices)[period]

    def period_at(self, wall: dt.time) -> Period:
        for r in self.ranges:
            if r.window.contains(wall):
                return r.period
        raise AssertionError("unreachable: the table covers the day")  # checked at construction


@dataclass(frozen=True, slots=True)
class Tier:
    """Monthly consumption up to `up_to_wh` (None: without limit) is priced at `price`."""

    up_to_wh: Wh | None
    price: Price


@dataclass(frozen=True, slots=True)
class TieredTariff:
    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        if not self.tiers or self.tiers[-1].up_to_wh is not None:
            raise PolicyError("the last tier must have no upper threshold")
        below = 0
        for tier in self.tiers:
            _check_price(tier.price, "tier price")
        for tier in self.tiers[:-1]:
            if type(tier.up_to_wh) is not int or tier.up_to_wh <= below:
                raise PolicyError("tier thresholds must be integer Wh, strictly ascending")
            below = tier.up_to_wh


Tariff = FlatTariff | TouTariff | TieredTariff


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split the integer `total` in proportion to `weights`, summing to `total` exactly.

    Largest remainder, ties to the earlier entry: deterministic, and an entry of weight 0 never
    gets anything.
    """
    whole = sum(weights)
    if total < 0 or whole <= 0 or any(w < 0 for w in weights):
        raise InputError(f"cannot apportion {total} by weights {list(weights)}")
    shares = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def time_in_periods(tariff: TouTariff, start: dt.datetime, end: dt.datetime) -> dict[Period, int]:
    """Microseconds of [start, end) spent in each period, in order of first appearance.

    An empty or backwards interval (the clock stepped back) counts as one microsecond in the
    period at `end`, so its energy still lands somewhere.
    """
    require_aware(start, "interval start")
    zone = require_aware(end, "interval end").tzinfo
    # Worked out once per interval: a cycle's meters share theirs (the last poll → this one),
    # so the first meter's split is looked up for the others. Aware datetimes compare by
    # instant across zones and by wall clock without `fold` within one, so the key also holds
    # the zone whose wall clock decides and both folds: equal keys, equal splits.
    key = (tariff, zone, start, start.fold, end, end.fold)
    spent = _SPLITS.get(key)
    if spent is None:
        if len(_SPLITS) >= _SPLITS_KEPT:
            _SPLITS.clear()
        spent = _SPLITS[key] = _time_in_periods(tariff, start, end)
    return dict(spent)


_SPLITS: dict[tuple[object, ...], tuple[tuple[Period, int], ...]] = {}
_SPLITS_KEPT = 1024


def _time_in_periods(
    tariff: TouTariff, start: dt.datetime, end: dt.datetime
) -> tuple[tuple[Period, int], ...]:
    zone = end.tzinfo
    start = start.astimezone(zone)
    if end <= start:
        return ((tariff.period_at(end.time()), 1),)
    pieces: list[tuple[dt.datetime, Period, int]] = []
    day = start.date()
    while day <= end.date():
        midnight = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
        for r in tariff.ranges:
            for a, b in r.window.spans():
                low = max(start, midnight + dt.timedelta(seconds=a))
                high = min(end, midnight + dt.timedelta(seconds=b))
                if low < high:
                    # Durations in UTC: right even across a daylight-saving change.
                    length = (high.astimezone(dt.UTC) - low.astimezone(dt.UTC)) // _MICROSECOND
                    pieces.append((low, r.period, length))
        day += dt.timedelta(days=1)
    spent: dict[Period, int] = {}
    for _, period, length in sorted(pieces, key=lambda piece: piece[0]):
        spent[period] = spent.get(period, 0) + length
    return tuple(spent.items())


def _tou_parts(
    tariff: TouTariff,
    energy: Wh,
    start: dt.datetime,
    end: dt.datetime,
    by_period: Mapping[Period, int] | None,
) -> list[CostPart]:
    spent = time_in_periods(tariff, start, end)
    order = list(spent)
    weights = list(spent.values())
    priced = dict(tariff.prices)
    if (
        by_period
        and sum(by_period.values()) > 0
        and all(wh >= 0 and (wh == 0 or period in priced) for period, wh in by_period.items())
    ):
        # The meter's registers win; periods the box's clock did not see (the meter's clock
        # differs) follow in the meter's register order.
        order += [p for p in tariff.meter_order if p in by_period and p not in spent]
        weights = [by_period.get(period, 0) for period in order]
    shares = apportion(energy, weights)
    return [
        CostPart(Wh(wh), priced[period], period.value)
        for period, wh in zip(order, shares, strict=True)
        if wh
    ]


def _tier_parts(tariff: TieredTariff, energy: Wh, month_used_wh: int) -> list[CostPart]:
    parts: list[CostPart] = []
    used, left = month_used_wh, int(energy)
    for number, tier in enumerate(tariff.tiers, 1):
        if tier.up_to_wh is not None and used >= tier.up_to_wh:
            continue
        take = left if tier.up_to_wh is None else min(left, tier.up_to_wh - used)
        parts.append(CostPart(Wh(take), tier.price, f"tier{number}"))
        used, left = used + take, left - take
        if not left:
            break
    return parts


def price_energy(
    tariff: Tariff,
    energy: Wh,
    start: dt.datetime,
    end: dt.datetime,
    *,
    month_used_wh: int = 0,
    by_period: Mapping[Period, int] | None = None,
) -> tuple[CostPart, ...]:
    """The parts of `energy` Wh used from `start` to `end`, in the order it was used.

    `month_used_wh` is the account's consumption this month before the interval (tiered);
    `by_period` the meter's per-tariff register deltas (time of use), if it reports them.
    """
    if type(energy) is not int or energy < 0:
        raise InputError(f"energy must be a non-negative integer Wh, got {energy!r}")
    if energy == 0:
        return ()
    if isinstance(tariff, FlatTariff):
        return (CostPart(energy, tariff.price, "single"),)
    if isinstance(tariff, TieredTariff):
        return tuple(_tier_parts(tariff, energy, month_used_wh))
    return tuple(_tou_parts(tariff, energy, start, end, by_period))


def exact_cost_of(parts: Sequence[CostPart]) -> ExactCost:
    return ExactCost(sum(part.exact for part in parts))


def energy_of(parts: Sequence[CostPart]) -> Wh:
    return Wh(sum(part.energy for part in parts))


def split_parts(
    parts: Sequence[CostPart], energy: int
) -> tuple[tuple[CostPart, ...], tuple[CostPart, ...]]:
    """The first `energy` Wh of `parts`, and the rest (a part cut in two keeps its price)."""
    head: list[CostPart] = []
    tail: list[CostPart] = []
    left = energy
    for part in parts:
        if left >= part.energy:
            head.append(part)
            left -= part.energy
        elif left > 0:
            head.append(CostPart(Wh(left), part.price, part.label))
            tail.append(CostPart(Wh(part.energy - left), part.price, part.label))
            left = 0
        else:
            tail.append(part)
    return tuple(head), tuple(tail)


def merge_parts(parts: Sequence[CostPart]) -> tuple[CostPart, ...]:
    """Parts of the same label and price summed, in order of first appearance."""
    merged: dict[tuple[str, int], int] = {}
    for part in parts:
        key = (part.label, part.price)
        merged[key] = merged.get(key, 0) + part.energy
    return tuple(CostPart(Wh(wh), Price(price), label) for (label, price), wh in merged.items())


def describe_parts(parts: Sequence[CostPart]) -> str:
    """Compact audit text for a transfer's refs: 'peak:1200@8365;valley:300@3120'."""
    return ";".join(f"{part.label}:{part.energy}@{part.price}" for part in parts)


def reference_price(tariff: Tariff) -> Price:
    """One price to turn money into energy for alarms: the flat price, the time-weighted daily
    average of a time-of-use table (rounded up, so alarms come early rather than late), or the
    first tier's price."""
    if isinstance(tariff, FlatTariff):
        return tariff.price
    if isinstance(tariff, TieredTariff):
        return tariff.tiers[0].price
    weighted = sum(
        (b - a) * tariff.price_of(r.period) for r in tariff.ranges for a, b in r.window.spans()
    )
    return Price(-(-weighted // DAY_SECONDS))
