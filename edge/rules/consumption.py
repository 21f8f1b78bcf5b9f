"""Consumption: bill a meter's register delta to its account's pockets
(docs/architecture.md §4, §5).

An electricity meter's energy (Wh) or a water meter's volume (litres): the policy's commodity
(`edge.rules.commodities`) says which register is billed, which pockets pay and where the value
goes. The table below is energy's; water's is water_subsidy → prepaid → credit → debt, its fen
to `sys:water_sales`, its legs carrying `volume_l` instead of `energy_wh`, and its registers
(`reg_from`, `reg_to`, `MeterBilling.reg_wh`) in litres.

One reading at a time. The energy since the last reading is priced (`tariffs.price_energy`),
appended behind anything still unbilled from earlier readings, and paid front first:

    leg       debit          credit              unit  amount
    subsidy   <A>:subsidy    sys:subsidy_used    Wh    energy, up to the subsidy left
    prepaid   <A>:prepaid    sys:energy_sales    fen   charge_step, down to zero
    grace     <A>:grace      sys:grace_used      Wh    energy, up to the grace left
    credit    <A>:prepaid    sys:energy_sales    fen   charge_step, from zero to -credit_limit
    debt      <A>:debt       sys:energy_sales    fen   charge_step, all that is left

The legs of one reading are one linked chain (all `linked=True` but the last), so the book
takes all or none. Every leg carries refs `meter`, `reg_from`, `reg_to` (the register span the
chain bills) and `energy_wh` (this leg's share); fen legs also `cost_cum`, the account's
cumulative exact cost after the leg, and `tariff`, the priced parts. Fen are always
`charge_step` on that cumulative cost, so fen charged = cumulative exact cost rounded once.
Ids are `entry_ids.consume(meter, reg_from, reg_to, leg)`: a re-run after a crash, given the
same reading and time, derives the same chain and the book answers `exists`.

**When the money runs out**, the energy is booked as debt: the `debt` leg charges what the
pockets cannot pay to the account's debt pocket, which has no floor (`ledger.accounts`), so
every reading's energy is in the book, paid or owed, and billed energy = register delta
(docs/architecture.md §5.6). The arrears rule trips an account that owes (`Pockets.debt_fen`),
an `unpaid_energy` alarm is raised when a debt first appears, and the billing cycle pays the
debt back from the prepaid pocket before it bills anything new (`edge.rules.debt`), which
releases the trip. Only energy whose cost does not yet reach a whole fen (a 10 Wh poll at 0.8
CNY/kWh) waits in the meter's state as `unbilled` (already priced) rather than being written
as a 0-fen transfer, which the ledger cannot hold; it goes out with the next reading that
crosses a fen.

**Implausible registers.** A register that runs backwards (beyond the reading's quantisation
bound) or rises more than `max_power_w × elapsed × jump_margin` (plus one register step) is an
alarm and bills nothing; the state keeps the last good register, so a glitch heals at the next
good reading and a real meter change waits for the operator's meter swap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import ClassVar

from edge.drivers.reading import Reading
from edge.rules.commodities import ENERGY, Commodity, PayLeg
from edge.rules.decisions import Alarm, AlarmKind, Decided, Decisions, Severity
from edge.rules.errors import InputError, PolicyError
from edge.rules.pockets import Pockets
from edge.rules.tariffs import (
    CostPart,
    Period,
    Tariff,
    TouTariff,
    describe_parts,
    energy_of,
    exact_cost_of,
    merge_parts,
    price_energy,
    split_parts,
)
from edge.rules.times import month_key, require_aware, stamp
from ledger import entry_ids
from ledger.accounts import POCKET_UNIT, AccountId, Pocket, System, Unit, pocket_id, system_id
from ledger.transfers import Code, RefValue, TimeSource, Transfer
from ledger.units import EXACT_PER_FEN, ExactCost, Wh, charge_step, fen_rounded

_HOUR = dt.timedelta(hours=1)
_NO_COST = ExactCost(0)


@dataclass(frozen=True, slots=True)
class ConsumptionPolicy:
    tariff: Tariff  # for water: prices per m³, tier thresholds in litres
    # The most the circuit can draw (breaker rating × voltage); for water, the most the pipe
    # passes in litres per hour: the register's units per hour either way.
    max_power_w: float
    jump_margin: float = 1.5
    # Floor on the elapsed time the jump test allows for, so a reading after the clock stepped
    # back (elapsed ≤ 0) or a very short poll is not refused for rounding of the registers.
    min_window: dt.timedelta = dt.timedelta(minutes=15)
    resolution_wh: int = 10  # one register step (0.01 kWh; 0.01 m³ is 10 L too)
    commodity: Commodity = ENERGY

    def __post_init__(self) -> None:
        if not self.max_power_w > 0 or not self.jump_margin >= 1:
            raise PolicyError("max_power_w must be > 0 and jump_margin >= 1")


@dataclass(frozen=True, slots=True)
class MeterBilling:
    """Where billing of one meter stands.

    `reg_wh`, `at`, `by_tariff_wh`, `error_wh`: the last accepted reading. `unbilled`: energy
    read and priced but not yet in the book (its cost below one fen), oldest first. The book
    has billed up to `billed_to`. A water meter's `reg_wh` and `unbilled` are litres (the
    stored name is frozen).
    """

    meter: str
    reg_wh: Wh
    at: dt.datetime
    by_tariff_wh: tuple[Wh, ...] = ()
    error_wh: int = 0
    unbilled: tuple[CostPart, ...] = ()

    # Stored by releases before debt was booked (`edge.runtime.codec` skips it on load): the
    # energy it counted is in `unbilled` and goes to the book, as debt if need be, next reading.
    _retired_fields: ClassVar[frozenset[str]] = frozenset({"short_wh"})

    @property
    def billed_to(self) -> Wh:
        return Wh(self.reg_wh - energy_of(self.unbilled))

    @classmethod
    def first(
        cls, reading: Reading, now: dt.datetime, commodity: Commodity = ENERGY
    ) -> MeterBilling:
        """Start billing a meter at this reading (commissioning, or a new meter after a swap)."""
        return cls(
            meter=reading.address,
            reg_wh=_register(reading, commodity),
            at=require_aware(now),
            by_tariff_wh=reading.energy_by_tariff_wh,
            error_wh=reading.energy_error_wh,
        )


@dataclass(frozen=True, slots=True)
class AccountCharges:
    """An account's running totals: cumulative exact cost (energy and water: one money), and
    this month's consumption of each commodity (`Commodity.month_field`)."""

    cost_cum: ExactCost = _NO_COST
    month: str = ""
    month_used_wh: int = 0
    month_used_l: int = 0

    def for_month(self, key: str) -> AccountCharges:
        # Only a later month resets the tiers: a clock stepping back keeps counting in the
        # month already reached rather than granting a second cheap first tier.
        if key > self.month:
            return AccountCharges(self.cost_cum, key, 0, 0)
        return self

    def month_used(self, commodity: Commodity) -> int:
        used: int = getattr(self, commodity.month_field)
        return used

    def after(self, commodity: Commodity, cost_cum: ExactCost, used: int) -> AccountCharges:
        """These totals with `cost_cum` and `used` more of `commodity` this month."""
        wh, litres = self.month_used_wh, self.month_used_l
        if commodity.month_field == "month_used_l":
            litres += used
        else:
            wh += used
        return AccountCharges(cost_cum, self.month, wh, litres)


@dataclass(frozen=True, slots=True)
class ConsumptionState:
    meter: MeterBilling
    charges: AccountCharges  # the account's; shared by all its meters, bill them in turn


@dataclass(frozen=True, slots=True)
class _Leg:
    name: str
    pocket: Pocket
    sink: System
    parts: tuple[CostPart, ...]
    fen: int = 0  # fen legs only
    cost_cum: ExactCost | None = None  # fen legs only


def _register(reading: Reading, commodity: Commodity) -> Wh:
    register = commodity.register(reading)
    if register is None:
        raise InputError(f"reading of meter {reading.address} has no {commodity.name} register")
    return Wh(register)


def _fen_leg(
    name: str,
    pocket: Pocket,
    sink: System,
    parts: tuple[CostPart, ...],
    *,
    cost_cum: ExactCost,
    allowance: int,
) -> tuple[_Leg | None, tuple[CostPart, ...], bool]:
    """The most of `parts` (front first) `allowance` fen pays; returns (leg, rest, deferred).

    `deferred` means everything would be paid but it rounds to 0 fen: keep it for later.
    """
    if allowance <= 0 or not parts:
        return None, parts, False
    # The largest cumulative cost that still rounds to at most `allowance` more fen.
    ceiling = (fen_rounded(cost_cum) + allowance + 1) * EXACT_PER_FEN - EXACT_PER_FEN // 2 - 1
    room, take = ceiling - cost_cum, 0
    for part in parts:
        fits = min(part.energy, room // part.price)
        take, room = take + fits, room - fits * part.price
        if fits < part.energy:
            break
    head, rest = split_parts(parts, take)
    fen, after = charge_step(cost_cum, exact_cost_of(head))
    if fen == 0:
        return None, parts, not rest
    return _Leg(name, pocket, sink, head, fen, after), rest, False


def _quantity_leg(
    name: str, pocket: Pocket, sink: System, parts: tuple[CostPart, ...], left: int
) -> tuple[_Leg | None, tuple[CostPart, ...]]:
    head, rest = split_parts(parts, max(0, min(left, energy_of(parts))))
    return (_Leg(name, pocket, sink, head) if head else None), rest


def _pay(
    queue: tuple[CostPart, ...],
    pockets: Pockets,
    cost_cum: ExactCost,
    pay_order: tuple[PayLeg, ...],
) -> tuple[list[_Leg], tuple[CostPart, ...]]:
    """Legs paying `queue` front first in the commodity's pay order, the last booking as debt
    what the pockets cannot pay; returns (legs, rest), the rest costing less than one fen."""
    legs: list[_Leg] = []
    rest = queue
    for step in pay_order:
        left = step.allowance(pockets, sum(leg.fen for leg in legs))
        if POCKET_UNIT[step.pocket] is not Unit.FEN:
            leg, rest = _quantity_leg(step.name, step.pocket, step.sink, rest, left)
        else:
            leg, rest, deferred = _fen_leg(
                step.name, step.pocket, step.sink, rest, cost_cum=cost_cum, allowance=left
            )
            if deferred:
                break
            cost_cum = cost_cum if leg is None or leg.cost_cum is None else leg.cost_cum
        if leg is not None:
            legs.append(leg)
    return legs, rest


def _register_deltas(tariff: Tariff, last: MeterBilling, reading: Reading) -> dict[Period, int]:
    """Per-period energy from the meter's tariff registers, when both readings have them."""
    before, after = last.by_tariff_wh, reading.energy_by_tariff_wh
    if not isinstance(tariff, TouTariff) or not after or len(before) != len(after):
        return {}
    deltas: dict[Period, int] = {}
    for period, old, new in zip(tariff.meter_order, before, after, strict=False):
        deltas[period] = deltas.get(period, 0) + new - old
    return deltas


def _implausible(
    last: MeterBilling, reading: Reading, delta: int, now: dt.datetime, policy: ConsumptionPolicy
) -> str | None:
    tolerance = reading.energy_error_wh + last.error_wh
    unit = policy.commodity.unit
    if delta < -tolerance:
        return f"register went backwards from {last.reg_wh} to {last.reg_wh + delta} {unit}"
    window = max(now - last.at, policy.min_window)
    limit = policy.max_power_w * (window / _HOUR) * policy.jump_margin
    if delta > limit + policy.resolution_wh + tolerance:
        return (
            f"register rose {delta} {unit} in {window}, more than {policy.max_power_w:g} "
            f"{unit}/h allows"
        )
    return None


def bill_reading(
    now: dt.datetime,
    reading: Reading,
    state: ConsumptionState,
    policy: ConsumptionPolicy,
    *,
    owner: str,
    pockets: Pockets,
    source: TimeSource,
) -> Decided[ConsumptionState]:
    """Bill the energy (or water) `reading` shows since the last one, to `owner`'s pockets.

    `now` is when the reading was taken (it stamps the transfers: pass the same value on a
    re-run). `pockets` are the account's available balances in the book right now.
    """
    require_aware(now)
    last = state.meter
    if reading.address != last.meter:
        raise InputError(f"reading of meter {reading.address} given with state of {last.meter}")
    commodity = policy.commodity
    register = _register(reading, commodity)
    delta = register - last.reg_wh
    problem = _implausible(last, reading, delta, now, policy)
    if problem is not None:
        kind = AlarmKind.REGISTER_BACKWARDS if delta < 0 else AlarmKind.REGISTER_JUMP
        alarm = Alarm(kind, Severity.CRITICAL, problem, account=owner, meter=last.meter)
        return Decided(state, Decisions(alarms=(alarm,)))
    delta = max(delta, 0)  # backwards within the float32 quantisation bound: no energy
    charges = state.charges.for_month(month_key(now))
    fresh = price_energy(
        policy.tariff,
        Wh(delta),
        last.at,
        now,
        month_used_wh=charges.month_used(commodity),
        by_period=_register_deltas(policy.tariff, last, reading),
    )
    legs, rest = _pay(last.unbilled + fresh, pockets, charges.cost_cum, commodity.pay_order)
    reg_from = last.billed_to
    reg_to = reg_from + sum(energy_of(leg.parts) for leg in legs)
    transfers = tuple(
        _transfer(
            leg,
            owner=owner,
            meter=last.meter,
            span=(reg_from, reg_to),
            ref=commodity.ref,
            now=now,
            source=source,
            linked=i < len(legs) - 1,
        )
        for i, leg in enumerate(legs)
    )
    cost_cum = next(
        (leg.cost_cum for leg in reversed(legs) if leg.cost_cum is not None), charges.cost_cum
    )
    meter = MeterBilling(
        meter=last.meter,
        reg_wh=register if delta else last.reg_wh,
        at=now,
        by_tariff_wh=reading.energy_by_tariff_wh,
        error_wh=reading.energy_error_wh,
        unbilled=merge_parts(rest),
    )
    alarms: tuple[Alarm, ...] = ()
    debt = next((leg for leg in legs if leg.pocket is Pocket.DEBT), None)
    if debt is not None and not pockets.debt_fen:
        alarms = (
            Alarm(
                AlarmKind.UNPAID_ENERGY,
                Severity.WARNING,
                f"{energy_of(debt.parts)} {commodity.unit} used with no money left to pay for "
                "it: "
                f"{debt.fen} fen booked as debt",
                account=owner,
                meter=last.meter,
            ),
        )
    new_charges = charges.after(commodity, cost_cum, delta)
    return Decided(ConsumptionState(meter, new_charges), Decisions(transfers, alarms=alarms))


def _transfer(
    leg: _Leg,
    *,
    owner: str,
    meter: str,
    span: tuple[int, int],
    ref: str,
    now: dt.datetime,
    source: TimeSource,
    linked: bool,
    swap: str | None = None,
) -> Transfer:
    reg_from, reg_to = span
    debit: AccountId = pocket_id(owner, leg.pocket)
    refs: dict[str, RefValue] = {
        "meter": meter,
        "reg_from": reg_from,
        "reg_to": reg_to,
        ref: energy_of(leg.parts),
    }
    if leg.cost_cum is not None:
        refs["cost_cum"] = leg.cost_cum
        refs["tariff"] = describe_parts(leg.parts)
    if swap is not None:
        refs["swap"] = swap
    credit = system_id(leg.sink)
    return Transfer(
        id=(
            entry_ids.consume(meter, reg_from, reg_to, leg.name)
            if swap is None
            else entry_ids.meter_settle(swap, leg.name)
        ),
        debit=debit,
        credit=credit,
        amount=leg.fen if leg.cost_cum is not None else energy_of(leg.parts),
        unit=POCKET_UNIT[leg.pocket],
        code=Code.CONSUME if swap is None else Code.METER_SETTLE,
        time=stamp(now),
        time_source=source,
        linked=linked,
        refs=refs,
    )


@dataclass(frozen=True, slots=True)
class FinalBill:
    """The last bill of a meter taken out at a swap (`bill_final`)."""

    transfers: tuple[Transfer, ...]  # one linked chain, code meter_settle
    charges: AccountCharges  # the account's running totals after it
    reg_from: Wh  # the register the meter was billed up to before
    energy_wh: Wh  # energy billed by `transfers` (paid or booked as debt)
    carried_wh: Wh  # energy below one fen: its exact cost is carried in `charges.cost_cum`


def bill_final(
    now: dt.datetime,
    final_wh: Wh,
    state: ConsumptionState,
    policy: ConsumptionPolicy,
    *,
    owner: str,
    pockets: Pockets,
    source: TimeSource,
    swap: str,
) -> FinalBill:
    """Bill a meter from where its billing stands up to `final_wh`, the register read off the
    meter as it is taken out (meter swap `swap`): what was read but not billed yet, then the
    energy since the last reading, priced at `now`. Legs, refs and the pay order are those of
    `bill_reading`; the code is `meter_settle` and the ids `entry_ids.meter_settle(swap,
    leg)`. No plausibility test: the register is the technician's reading, not the wire's.

    The meter has no next reading, so nothing can wait for one: what the pockets cannot pay is
    booked as debt, and energy whose cost stays below one fen (`carried_wh`) is billed no fen;
    its exact cost is added to the account's cumulative cost, so the account's next fen charge
    pays it.
    """
    require_aware(now)
    last = state.meter
    if final_wh < last.reg_wh:
        raise InputError(
            f"final register {final_wh} Wh of meter {last.meter} is below the last register "
            f"billed, {last.reg_wh} Wh"
        )
    delta = final_wh - last.reg_wh
    commodity = policy.commodity
    charges = state.charges.for_month(month_key(now))
    fresh = price_energy(
        policy.tariff, Wh(delta), last.at, now, month_used_wh=charges.month_used(commodity)
    )
    legs, rest = _pay(last.unbilled + fresh, pockets, charges.cost_cum, commodity.pay_order)
    reg_from = last.billed_to
    billed = sum(energy_of(leg.parts) for leg in legs)
    cost_cum = next(
        (leg.cost_cum for leg in reversed(legs) if leg.cost_cum is not None), charges.cost_cum
    )
    carried = energy_of(rest)
    cost_cum = ExactCost(cost_cum + exact_cost_of(rest))
    transfers = tuple(
        _transfer(
            leg,
            owner=owner,
            meter=last.meter,
            span=(reg_from, reg_from + billed),
            ref=commodity.ref,
            now=now,
            source=source,
            linked=i < len(legs) - 1,
            swap=swap,
        )
        for i, leg in enumerate(legs)
    )
    after = charges.after(commodity, cost_cum, delta)
    return FinalBill(transfers, after, reg_from, Wh(billed), carried)
