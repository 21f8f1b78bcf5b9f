"""Low-balance alarms: by money, by energy, or by days of credit left; grouped by place.

Checked once per account per day, at the first call at or after `alarm_at` (a box that boots
later in the day checks then). An account is low when any configured threshold is reached:

- `below_fen`: prepaid money the account can still spend (down to its floor) ≤ the amount;
- `below_wh`: energy left ≤ the amount, where energy left = subsidy + grace + the prepaid money
  turned into Wh at the account's reference price (`tariffs.reference_price`);
- `below_days`: the energy left lasts no more than this many days at the mean of the recent
  daily consumption the shell passes (no forecast without consumption history);
- `below_l`: for an account with a water meter, water left ≤ the amount, where water left =
  free water + the prepaid money turned into litres at the water tariff's reference price.
  (The money is one: `below_fen` counts what water spent too.)

The result groups the low accounts by building, floor and shop (`BuildingGroup` → `FloorGroup`
→ `ShopGroup` → `LowBalanceLine`, sorted) for the console and the CLI, and raises one alarm per
account for the merchant notices.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from itertools import groupby
from operator import attrgetter

from edge.rules.decisions import Alarm, AlarmKind, Decisions, Severity
from edge.rules.pockets import Pockets
from edge.rules.times import require_aware
from ledger.units import EXACT_PER_FEN, Fen, Price, fen_to_yuan


@dataclass(frozen=True, slots=True)
class Place:
    building: str
    floor: str
    shop: str


@dataclass(frozen=True, slots=True)
class LowBalancePolicy:
    alarm_at: dt.time = dt.time(9, 0)
    below_fen: int | None = None
    below_wh: int | None = None
    below_days: int | None = None
    below_l: int | None = None


@dataclass(frozen=True, slots=True)
class BalanceView:
    """One account as the low-balance rule sees it."""

    owner: str
    place: Place
    pockets: Pockets
    price: Price  # to turn money into energy: tariffs.reference_price(the account's tariff)
    daily_use_wh: tuple[int, ...] = ()  # recent whole days' consumption
    water_price: Price | None = None  # per m³; None: the account has no water meter

    @property
    def energy_left_wh(self) -> int:
        money_wh = max(0, self.pockets.spendable_fen) * EXACT_PER_FEN // self.price
        return max(0, self.pockets.subsidy_wh) + max(0, self.pockets.grace_wh) + money_wh

    @property
    def water_left_l(self) -> int | None:
        if self.water_price is None:
            return None
        money_l = max(0, self.pockets.spendable_fen) * EXACT_PER_FEN // self.water_price
        return max(0, self.pockets.water_subsidy_l) + money_l

    @property
    def days_left(self) -> float | None:
        used = sum(self.daily_use_wh)
        return self.energy_left_wh * len(self.daily_use_wh) / used if used > 0 else None


@dataclass(frozen=True, slots=True)
class LowBalanceLine:
    owner: str
    place: Place
    reasons: tuple[str, ...]  # of "amount", "energy", "days", "water"
    spendable_fen: int
    energy_left_wh: int
    days_left: float | None
    water_left_l: int | None = None


@dataclass(frozen=True, slots=True)
class ShopGroup:
    shop: str
    lines: tuple[LowBalanceLine, ...]


@dataclass(frozen=True, slots=True)
class FloorGroup:
    floor: str
    shops: tuple[ShopGroup, ...]


@dataclass(frozen=True, slots=True)
class BuildingGroup:
    building: str
    floors: tuple[FloorGroup, ...]


@dataclass(frozen=True, slots=True)
class LowBalanceState:
    checked: Mapping[str, dt.date] = field(default_factory=dict)  # owner → last day checked


@dataclass(frozen=True, slots=True)
class LowBalanceResult:
    state: LowBalanceState
    decisions: Decisions
    report: tuple[BuildingGroup, ...]


def _reasons(view: BalanceView, policy: LowBalancePolicy) -> tuple[str, ...]:
    reasons = []
    if policy.below_fen is not None and view.pockets.spendable_fen <= policy.below_fen:
        reasons.append("amount")
    if policy.below_wh is not None and view.energy_left_wh <= policy.below_wh:
        reasons.append("energy")
    used = sum(view.daily_use_wh)
    # Integer comparison of energy_left / mean daily use <= below_days.
    if (
        policy.below_days is not None
        and used > 0
        and view.energy_left_wh * len(view.daily_use_wh) <= policy.below_days * used
    ):
        reasons.append("days")
    water_left = view.water_left_l
    if policy.below_l is not None and water_left is not None and water_left <= policy.below_l:
        reasons.append("water")
    return tuple(reasons)


def _message(line: LowBalanceLine) -> str:
    days = f", about {line.days_left:.1f} days left" if line.days_left is not None else ""
    water = f", {line.water_left_l} L of water" if line.water_left_l is not None else ""
    return (
        f"low balance ({', '.join(line.reasons)}): {fen_to_yuan(Fen(line.spendable_fen))} yuan, "
        f"{line.energy_left_wh} Wh left{water}{days}"
    )


def group_by_place(lines: Iterable[LowBalanceLine]) -> tuple[BuildingGroup, ...]:
    """Lines sorted and nested by building, floor and shop."""
    ordered = sorted(lines, key=lambda line: (*astuple(line.place), line.owner))
    buildings: list[BuildingGroup] = []
    for building, in_building in groupby(ordered, key=attrgetter("place.building")):
        floors: list[FloorGroup] = []
        for floor, on_floor in groupby(in_building, key=attrgetter("place.floor")):
            shops = groupby(on_floor, key=attrgetter("place.shop"))
            floors.append(FloorGroup(floor, tuple(ShopGroup(s, tuple(ls)) for s, ls in shops)))
        buildings.append(BuildingGroup(building, tuple(floors)))
    return tuple(buildings)


def render(report: Sequence[BuildingGroup]) -> str:
    """The grouped report as indented text for the CLI."""
    out: list[str] = []
    for building in report:
        out.append(building.building)
        for floor in building.floors:
            out.append(f"  {floor.floor}")
            for shop in floor.shops:
                for line in shop.lines:
                    out.append(f"    {shop.shop} {line.owner}: {_message(line)}")
    return "\n".join(out)


def check_low_balance(
    now: dt.datetime,
    views: Iterable[BalanceView],
    state: LowBalanceState,
    policy: LowBalancePolicy,
) -> LowBalanceResult:
    """Check every account not yet checked today, once the day's alarm time has come."""
    require_aware(now)
    today = now.date()
    if now.timetz().replace(tzinfo=None) < policy.alarm_at:
        return LowBalanceResult(state, Decisions(), ())
    checked = dict(state.checked)
    lines: list[LowBalanceLine] = []
    for view in views:
        # `!=`, not `<`: a clock that jumped ahead and came back must not silence alarms.
        if checked.get(view.owner) == today:
            continue
        checked[view.owner] = today
        reasons = _reasons(view, policy)
        if reasons:
            lines.append(
                LowBalanceLine(
                    view.owner,
                    view.place,
                    reasons,
                    view.pockets.spendable_fen,
                    view.energy_left_wh,
                    view.days_left,
                    view.water_left_l,
                )
            )
    alarms = tuple(
        Alarm(
            AlarmKind.LOW_BALANCE,
            Severity.WARNING,
            _message(line),
            account=line.owner,
            shop=line.place.shop,
        )
        for line in lines
    )
    return LowBalanceResult(
        LowBalanceState(checked), Decisions(alarms=alarms), group_by_place(lines)
    )
