"""What a meter measures and how it is paid: energy (Wh) or water (litres), as data
(docs/architecture.md §4, §5.1).

The billing arithmetic does not care which: a water price is an integer number of 0.0001 CNY per
m³ (3.5 CNY/m³ = `Price(35000)`), so the exact cost of `l` litres at price `p` is `l * p` in
1e-7 CNY, exactly as `e` Wh at a price per kWh. Tariffs (`edge.rules.tariffs`) price either,
with tier thresholds in the commodity's unit. What differs is a row of this table: which
register of a `Reading` is billed, which ref names a leg's share, which pockets pay (front
first, `PayLeg`) and which system accounts the value goes to, and which of the account's
monthly counters a tiered tariff reads.

    commodity  register    ref        pay order (pocket → system account)
    energy     energy_wh   energy_wh  subsidy → subsidy_used, prepaid → energy_sales,
                                      grace → grace_used, credit (prepaid) → energy_sales,
                                      debt → energy_sales
    water      volume_l    volume_l   water_subsidy → water_subsidy_used, prepaid →
                                      water_sales, credit (prepaid) → water_sales,
                                      debt → water_sales

Water has no grace leg: grace is the electricity a refund leaves on for a while. Money is money:
water is paid from the same prepaid pocket, owed to the same debt pocket and counted in the
same cumulative exact cost as the account's energy, so fen charged = cumulative cost rounded
once holds per account over both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge.drivers.reading import Reading
from edge.rules.pockets import Pockets
from ledger.accounts import Pocket, System
from ledger.units import MAX_AMOUNT


@dataclass(frozen=True, slots=True)
class PayLeg:
    """One leg of the pay order: `name` (part of the entry id), the pocket it takes from, the
    system account it goes to, and how much it may take given the pockets and the fen the legs
    before it took (in the pocket's unit)."""

    name: str
    pocket: Pocket
    sink: System
    allowance: Callable[[Pockets, int], int]


@dataclass(frozen=True, slots=True)
class Commodity:
    name: str
    unit: str  # for messages: "Wh", "L"
    ref: str  # the ref carrying a leg's share of its register span
    register: Callable[[Reading], int | None]  # the cumulative register billed
    month_field: str  # the `AccountCharges` counter a tiered tariff reads
    pay_order: tuple[PayLeg, ...]


def _credit(p: Pockets, paid: int) -> int:
    return p.spendable_fen - paid if p.credit_limit_fen else 0


def _energy_register(reading: Reading) -> int | None:
    return reading.energy_wh


def _water_register(reading: Reading) -> int | None:
    return reading.volume_l


ENERGY = Commodity(
    name="energy",
    unit="Wh",
    ref="energy_wh",
    register=_energy_register,
    month_field="month_used_wh",
    pay_order=(
        PayLeg("subsidy", Pocket.SUBSIDY, System.SUBSIDY_USED, lambda p, _: p.subsidy_wh),
        PayLeg("prepaid", Pocket.PREPAID, System.ENERGY_SALES, lambda p, _: p.prepaid_fen),
        PayLeg("grace", Pocket.GRACE, System.GRACE_USED, lambda p, _: p.grace_wh),
        PayLeg("credit", Pocket.PREPAID, System.ENERGY_SALES, _credit),
        PayLeg("debt", Pocket.DEBT, System.ENERGY_SALES, lambda p, _: MAX_AMOUNT),
    ),
)

WATER = Commodity(
    name="water",
    unit="L",
    ref="volume_l",
    register=_water_register,
    month_field="month_used_l",
    pay_order=(
        PayLeg(
            "water_subsidy",
            Pocket.WATER_SUBSIDY,
            System.WATER_SUBSIDY_USED,
            lambda p, _: p.water_subsidy_l,
        ),
        PayLeg("prepaid", Pocket.PREPAID, System.WATER_SALES, lambda p, _: p.prepaid_fen),
        PayLeg("credit", Pocket.PREPAID, System.WATER_SALES, _credit),
        PayLeg("debt", Pocket.DEBT, System.WATER_SALES, lambda p, _: MAX_AMOUNT),
    ),
)

COMMODITIES: dict[str, Commodity] = {c.name: c for c in (ENERGY, WATER)}
