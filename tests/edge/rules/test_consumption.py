"""Consumption: subsidy → prepaid → grace → credit → debt as one linked chain, money running
out and paid back,
implausible registers, and properties against a real book and the ledger invariants."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.rules import tariffs
from edge.rules.consumption import (
    AccountCharges,
    ConsumptionPolicy,
    ConsumptionState,
    MeterBilling,
    bill_reading,
)
from edge.rules.debt import repay
from edge.rules.decisions import AlarmKind, Decided
from edge.rules.errors import InputError
from edge.rules.pockets import Pockets
from edge.rules.tariffs import FlatTariff, Period, Tariff, exact_cost_of
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.book import Outcome
from ledger.ids import derive_id
from ledger.transfers import Code, Transfer
from ledger.units import ExactCost, Fen, Price, Wh, charge_step, exact_cost, fen_rounded
from tests.edge.rules.helpers import SOURCE, Ledger, at, reading
from tests.edge.rules.test_tariffs import TIERED, TOU
from tests.ledger.factories import CASH, transfer

OWNER = "A1"
FLAT = FlatTariff(Price(8_000))  # 0.8 CNY/kWh: 1 kWh = 80 fen exactly
POLICY = ConsumptionPolicy(FLAT, max_power_w=20_000)
T0 = at(2026, 11, 1, 9)
REG0 = 1_000_000


def start(reg: int = REG0, when: dt.datetime = T0, **fields: Any) -> ConsumptionState:
    return ConsumptionState(MeterBilling.first(reading(reg, **fields), when), AccountCharges())


def fund(ledger: Ledger, *, fen: int = 0, subsidy: int = 0, grace: int = 0) -> None:
    n = len(ledger.history) + 1
    moves = []
    if fen:
        moves.append(
            transfer(10_000 + n, CASH, pocket_id(OWNER, Pocket.PREPAID), fen, Code.RECHARGE)
        )
    if subsidy:
        moves.append(
            transfer(
                20_000 + n,
                system_id(System.SUBSIDY_ISSUED),
                pocket_id(OWNER, Pocket.SUBSIDY),
                subsidy,
                Code.SUBSIDY_ISSUE,
                refs={"period": f"p{n}"},
            )
        )
    if grace:
        moves.append(
            transfer(
                30_000 + n,
                system_id(System.GRACE_ISSUED),
                pocket_id(OWNER, Pocket.GRACE),
                grace,
                Code.GRACE_ISSUE,
            )
        )
    ledger.post(moves)


def bill(
    ledger: Ledger,
    state: ConsumptionState,
    reg: int,
    when: dt.datetime,
    policy: ConsumptionPolicy = POLICY,
    **fields: Any,
) -> Decided[ConsumptionState]:
    decided = bill_reading(
        when,
        reading(reg, **fields),
        state,
        policy,
        owner=OWNER,
        pockets=Pockets.from_book(ledger.book, OWNER),
        source=SOURCE,
    )
    assert all(o is Outcome.OK for o in ledger.post(decided.decisions.transfers))
    ledger.assert_sound()
    return decided


def legs(transfers: tuple[Transfer, ...]) -> list[tuple[str, str, int, int]]:
    return [(t.debit, t.credit, t.amount, int(t.refs["energy_wh"])) for t in transfers]


def test_subsidy_first_then_prepaid_in_one_linked_chain() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=1_000, subsidy=300)
    decided = bill(ledger, start(), REG0 + 1_000, T0 + dt.timedelta(hours=1))
    chain = decided.decisions.transfers
    assert legs(chain) == [
        ("A1:subsidy", "sys:subsidy_used", 300, 300),
        ("A1:prepaid", "sys:energy_sales", 56, 700),  # 700 Wh × 0.8 CNY/kWh = 56 fen
    ]
    assert [t.linked for t in chain] == [True, False]
    assert all(t.code is Code.CONSUME for t in chain)
    assert chain[1].refs == {
        "meter": "M1",
        "reg_from": REG0,
        "reg_to": REG0 + 1_000,
        "energy_wh": 700,
        "cost_cum": 5_600_000,
        "tariff": "single:700@8000",
    }
    assert chain[0].id == derive_id("consume", "M1", REG0, REG0 + 1_000, "subsidy")
    assert chain[0].time == "2026-11-01T10:00:00+08:00"
    assert decided.state.meter.billed_to == REG0 + 1_000
    assert decided.state.meter.unbilled == ()


def test_rerun_derives_the_same_chain_and_the_book_says_exists() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=1_000, subsidy=300)
    state, when = start(), T0 + dt.timedelta(hours=1)
    pockets = Pockets.from_book(ledger.book, OWNER)
    first = bill_reading(
        when, reading(REG0 + 1_000), state, POLICY, owner=OWNER, pockets=pockets, source=SOURCE
    )
    again = bill_reading(
        when, reading(REG0 + 1_000), state, POLICY, owner=OWNER, pockets=pockets, source=SOURCE
    )
    assert first == again
    assert ledger.post(first.decisions.transfers) == [Outcome.OK, Outcome.OK]
    assert ledger.post(again.decisions.transfers) == [Outcome.EXISTS, Outcome.EXISTS]


def test_grace_then_credit_after_prepaid() -> None:
    ledger = Ledger(OWNER, credit_limit=500)
    fund(ledger, fen=40, subsidy=100, grace=200)
    decided = bill(ledger, start(), REG0 + 2_000, T0 + dt.timedelta(hours=2))
    # 40 fen pay 506 Wh: 40.48 fen of exact cost still rounds to 40 (cumulative rounding).
    assert legs(decided.decisions.transfers) == [
        ("A1:subsidy", "sys:subsidy_used", 100, 100),
        ("A1:prepaid", "sys:energy_sales", 40, 506),
        ("A1:grace", "sys:grace_used", 200, 200),
        ("A1:prepaid", "sys:energy_sales", 96, 1_194),  # the credit leg, below zero
    ]
    assert [t.refs["cost_cum"] for t in decided.decisions.transfers[1::2]] == [
        4_048_000,
        13_600_000,
    ]
    assert Pockets.from_book(ledger.book, OWNER) == Pockets(Wh(0), Fen(-96), Wh(0), Fen(500))


def repay_debt(ledger: Ledger, when: dt.datetime) -> Transfer | None:
    """What the billing cycle does before it bills: money that arrived pays the debt first."""
    pockets = Pockets.from_book(ledger.book, OWNER)
    repaid = ledger.book.balance(pocket_id(OWNER, Pocket.DEBT)).credits_posted
    transfer = repay(when, OWNER, pockets, repaid, source=SOURCE)
    if transfer is not None:
        assert ledger.post([transfer]) == [Outcome.OK]
        ledger.assert_sound()
    return transfer


def test_money_running_out_books_the_rest_as_debt_then_a_top_up_pays_it_first() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=40)  # pays 506 Wh (40.48 fen, rounded once)
    state = bill(ledger, start(), REG0 + 800, T0 + dt.timedelta(hours=1))
    # 800 Wh cost 64 fen: 40 paid, the 294 Wh the money could not pay owed (24 fen).
    assert legs(state.decisions.transfers) == [
        ("A1:prepaid", "sys:energy_sales", 40, 506),
        ("A1:debt", "sys:energy_sales", 24, 294),
    ]
    assert [t.refs["reg_to"] for t in state.decisions.transfers] == [REG0 + 800] * 2
    assert state.state.meter.billed_to == REG0 + 800
    assert [a.kind for a in state.decisions.alarms] == [AlarmKind.UNPAID_ENERGY]
    assert "24 fen booked as debt" in state.decisions.alarms[0].message

    # Still no money: more debt, no second alarm.
    state = bill(ledger, state.state, REG0 + 1_000, T0 + dt.timedelta(hours=2))
    assert legs(state.decisions.transfers) == [("A1:debt", "sys:energy_sales", 16, 200)]
    assert state.decisions.alarms == ()
    assert Pockets.from_book(ledger.book, OWNER).debt_fen == 40

    # Nothing to pay it with: no repayment.
    assert repay_debt(ledger, T0 + dt.timedelta(hours=2)) is None
    # A top-up pays the 40 fen owed first, then the next reading is paid from what is left.
    fund(ledger, fen=1_000)
    repaid = repay_debt(ledger, T0 + dt.timedelta(hours=3))
    assert repaid is not None
    assert (repaid.debit, repaid.credit, repaid.amount, repaid.code) == (
        "A1:prepaid",
        "A1:debt",
        40,
        Code.DEBT_REPAY,
    )
    assert Pockets.from_book(ledger.book, OWNER) == Pockets(prepaid_fen=Fen(960))
    state = bill(ledger, state.state, REG0 + 1_100, T0 + dt.timedelta(hours=3))
    assert legs(state.decisions.transfers) == [("A1:prepaid", "sys:energy_sales", 8, 100)]
    assert repay_debt(ledger, T0 + dt.timedelta(hours=4)) is None  # nothing owed any more


def test_a_repayment_is_capped_by_the_money_and_each_one_has_its_own_id() -> None:
    ledger = Ledger(OWNER)
    bill(ledger, start(), REG0 + 1_000, T0 + dt.timedelta(hours=1))  # 80 fen owed
    fund(ledger, fen=30)
    first = repay_debt(ledger, T0 + dt.timedelta(hours=2))
    fund(ledger, fen=100)
    second = repay_debt(ledger, T0 + dt.timedelta(hours=3))
    assert first is not None and second is not None
    assert (first.amount, second.amount) == (30, 50)
    assert first.id != second.id
    assert Pockets.from_book(ledger.book, OWNER) == Pockets(prepaid_fen=Fen(50))


def test_money_pays_up_to_the_exact_rounding_boundary() -> None:
    # At 0.0001 CNY/kWh one Wh costs one unit of exact cost: 1 fen pays until the cumulative
    # cost would round to 2 fen, i.e. 149 999 units (1.49999 fen); the rest is owed.
    ledger = Ledger(OWNER)
    fund(ledger, fen=1)
    policy = ConsumptionPolicy(FlatTariff(Price(1)), max_power_w=10**9)
    decided = bill(ledger, start(), REG0 + 200_000, T0 + dt.timedelta(hours=1), policy)
    paid, owed = decided.decisions.transfers
    assert (paid.amount, paid.refs["energy_wh"]) == (1, 149_999)
    assert (owed.debit, owed.amount, owed.refs["energy_wh"]) == ("A1:debt", 1, 50_001)


def test_no_money_at_all_books_it_all_as_debt() -> None:
    ledger = Ledger(OWNER)
    decided = bill(ledger, start(), REG0 + 120, T0 + dt.timedelta(minutes=15))
    # 120 Wh at 0.8 CNY/kWh: 9.6 fen, owed as 10.
    assert legs(decided.decisions.transfers) == [("A1:debt", "sys:energy_sales", 10, 120)]
    assert decided.state.meter.unbilled == ()


def test_energy_below_one_fen_waits_for_the_next_reading() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=1_000)
    # 10 Wh at 0.8 CNY/kWh is 0.8 fen: rounds to 1 fen on a fresh account.
    first = bill(ledger, start(), REG0 + 10, T0 + dt.timedelta(minutes=1))
    assert [t.amount for t in first.decisions.transfers] == [1]
    # Another 0.8 fen: cumulative 1.6 fen still rounds to 2, fine; then 2.4 rounds to 2: wait.
    second = bill(ledger, first.state, REG0 + 20, T0 + dt.timedelta(minutes=2))
    assert [t.amount for t in second.decisions.transfers] == [1]
    third = bill(ledger, second.state, REG0 + 30, T0 + dt.timedelta(minutes=3))
    assert third.decisions.transfers == ()
    assert third.state.meter.unbilled[0].energy == 10
    fourth = bill(ledger, third.state, REG0 + 40, T0 + dt.timedelta(minutes=4))
    [t] = fourth.decisions.transfers
    assert (t.amount, t.refs["reg_from"], t.refs["reg_to"]) == (1, REG0 + 20, REG0 + 40)
    assert fen_rounded(ExactCost(fourth.state.charges.cost_cum)) == 3  # 3.2 fen


def test_register_backwards_is_an_alarm_and_bills_nothing() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=1_000)
    state = start()
    decided = bill(ledger, state, REG0 - 500, T0 + dt.timedelta(minutes=15))
    assert decided.state == state
    assert decided.decisions.transfers == ()
    assert [a.kind for a in decided.decisions.alarms] == [AlarmKind.REGISTER_BACKWARDS]


def test_backwards_within_float_quantisation_is_no_energy() -> None:
    ledger = Ledger(OWNER)
    state = start(energy_error_wh=8)
    decided = bill(ledger, state, REG0 - 6, T0 + dt.timedelta(minutes=15), energy_error_wh=8)
    assert decided.decisions.empty
    assert decided.state.meter.reg_wh == REG0


def test_implausible_jump_is_an_alarm_until_time_makes_it_plausible() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=100_000)
    state = start()
    # 20 kW × 15 min × 1.5 = 7.5 kWh allowed in a poll; a bit error adds 80 kWh.
    decided = bill(ledger, state, REG0 + 80_000, T0 + dt.timedelta(minutes=15))
    assert [a.kind for a in decided.decisions.alarms] == [AlarmKind.REGISTER_JUMP]
    assert decided.decisions.transfers == ()
    assert decided.state == state
    # The same energy over a day off is plausible and billed whole.
    decided = bill(ledger, state, REG0 + 80_000, T0 + dt.timedelta(days=1))
    assert sum(int(t.refs["energy_wh"]) for t in decided.decisions.transfers) == 80_000


def test_clock_stepping_back_still_bills() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=1_000)
    decided = bill(ledger, start(), REG0 + 100, T0 - dt.timedelta(hours=3))
    assert [t.amount for t in decided.decisions.transfers] == [8]


def test_time_of_use_with_the_meters_tariff_registers() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=10_000)
    policy = ConsumptionPolicy(TOU, max_power_w=20_000)
    state = start(energy_by_tariff_wh=(0, 0, 0, 0), when=at(2026, 11, 1, 10))
    decided = bill(
        ledger,
        state,
        REG0 + 1_000,
        at(2026, 11, 1, 12),
        policy,
        energy_by_tariff_wh=(400, 600, 0, 0),
    )
    [t] = decided.decisions.transfers
    # 600 Wh peak at 1.1 + 400 Wh sharp at 1.3 = 66 + 52 fen
    assert t.amount == 118
    assert t.refs["tariff"] == "peak:600@11000;sharp:400@13000"


def test_tiered_month_resets_only_forwards() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=100_000)
    policy = ConsumptionPolicy(TIERED, max_power_w=100_000)
    decided = bill(
        ledger, start(when=at(2026, 11, 30, 12)), REG0 + 12_000, at(2026, 11, 30, 20), policy
    )
    assert decided.state.charges.month_used_wh == 12_000
    # December: the month's consumption starts again at tier 1.
    december = bill(ledger, decided.state, REG0 + 13_000, at(2026, 12, 1, 1), policy)
    assert december.state.charges == dataclasses.replace(
        december.state.charges, month="2026-12", month_used_wh=1_000
    )
    assert december.decisions.transfers[0].refs["tariff"] == "tier1:1000@5000"
    # The clock steps back into November: still counted in December, no second cheap tier.
    back = bill(ledger, december.state, REG0 + 14_000, at(2026, 11, 30, 23), policy)
    assert back.state.charges.month == "2026-12"
    assert back.state.charges.month_used_wh == 2_000


def test_misuse_is_an_input_error() -> None:
    with pytest.raises(InputError):
        MeterBilling.first(reading(1).__class__(address="M1"), T0)
    with pytest.raises(InputError):
        bill_reading(
            T0,
            reading(REG0, address="M2"),
            start(),
            POLICY,
            owner=OWNER,
            pockets=Pockets(),
            source=SOURCE,
        )
    with pytest.raises(InputError):
        bill_reading(
            T0.replace(tzinfo=None),
            reading(REG0),
            start(),
            POLICY,
            owner=OWNER,
            pockets=Pockets(),
            source=SOURCE,
        )


# -- properties ---------------------------------------------------------------------------------

step = st.one_of(
    st.tuples(st.just("read"), st.integers(0, 3_000), st.integers(1, 180)),
    st.tuples(st.just("recharge"), st.integers(1, 300), st.just(0)),
    st.tuples(st.just("repay"), st.just(0), st.just(0)),
    st.tuples(st.just("subsidy"), st.integers(1, 2_000), st.just(0)),
    st.tuples(st.just("grace"), st.integers(1, 500), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    tariff=st.sampled_from([FLAT, FlatTariff(Price(8_365)), TOU, TIERED]),
    credit_limit=st.sampled_from([0, 0, 150]),
    steps=st.lists(step, min_size=1, max_size=40),
    by_registers=st.booleans(),
)
def test_billing_conserves_energy_and_money(
    *, tariff: Tariff, credit_limit: int, steps: list[tuple[str, int, int]], by_registers: bool
) -> None:
    """Whatever the money does: the book accepts every chain, the invariants hold, billed
    (paid or owed) + unbilled energy equals the register delta, what is unbilled costs less
    than a fen, no pocket goes below its floor, and debt appears only when nothing else can
    pay; repaid, it never goes beyond zero."""
    ledger = Ledger(OWNER, credit_limit=credit_limit)
    policy = ConsumptionPolicy(tariff, max_power_w=100_000)
    tariffs = (Wh(0),) * 4 if by_registers else ()
    state = ConsumptionState(
        MeterBilling(meter="M1", reg_wh=Wh(REG0), at=T0, by_tariff_wh=tariffs), AccountCharges()
    )
    when, reg, split = T0, REG0, [0, 0, 0, 0]
    for kind, amount, minutes in steps:
        if kind == "read":
            when += dt.timedelta(minutes=minutes)
            reg += amount
            split[(minutes + amount) % 4] += amount  # some split across the meter's tariffs
            fields = {"energy_by_tariff_wh": tuple(split)} if by_registers else {}
            decided = bill(ledger, state, reg, when, policy, **fields)
            billed = sum(int(t.refs["energy_wh"]) for t in ledger.history if t.code is Code.CONSUME)
            state = decided.state
            assert billed + sum(p.energy for p in state.meter.unbilled) == reg - REG0
            assert billed == state.meter.billed_to - REG0
            pockets = Pockets.from_book(ledger.book, OWNER)
            assert pockets.subsidy_wh >= 0 and pockets.grace_wh >= 0
            assert pockets.spendable_fen >= 0
            assert fen_rounded(exact_cost_of(state.meter.unbilled)) == 0 or not any(
                t.debit.endswith(":debt") for t in decided.decisions.transfers
            )
            if any(t.debit.endswith(":debt") for t in decided.decisions.transfers):
                # Debt only once nothing is left that could pay a whole fen of the energy.
                assert pockets.subsidy_wh == 0 and pockets.grace_wh == 0
                assert pockets.spendable_fen == 0
            assert pockets.debt_fen >= 0
        elif kind == "repay":
            repay_debt(ledger, when)
            pockets = Pockets.from_book(ledger.book, OWNER)
            assert pockets.debt_fen == 0 or pockets.spendable_fen == 0
        else:
            fund(ledger, **{{"recharge": "fen"}.get(kind, kind): amount})
    # Fen charged (paid or owed) always equal the cumulative exact cost rounded once.
    charged = sum(t.amount for t in ledger.history if t.code is Code.CONSUME and t.unit == "fen")
    assert charged == fen_rounded(state.charges.cost_cum)
    repaid = sum(t.amount for t in ledger.history if t.code is Code.DEBT_REPAY)
    owed = sum(t.amount for t in ledger.history if t.debit == pocket_id(OWNER, Pocket.DEBT))
    assert owed - repaid == Pockets.from_book(ledger.book, OWNER).debt_fen


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=60))
def test_many_small_readings_cost_what_one_big_reading_costs(deltas: list[int]) -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=10**7)
    policy = ConsumptionPolicy(FlatTariff(Price(8_365)), max_power_w=100_000)
    state, when, reg = start(), T0, REG0
    for delta in deltas:
        when += dt.timedelta(minutes=5)
        reg += delta
        state = bill(ledger, state, reg, when, policy).state
    charged = sum(t.amount for t in ledger.history if t.code is Code.CONSUME)
    whole, _ = charge_step(ExactCost(0), exact_cost(Wh(reg - REG0), Price(8_365)))
    unbilled_fen, _ = (
        charge_step(
            state.charges.cost_cum, exact_cost(state.meter.unbilled[0].energy, Price(8_365))
        )
        if state.meter.unbilled
        else (0, None)
    )
    assert charged + unbilled_fen == whole


def test_period_enum_matches_the_meter_order() -> None:
    assert TOU.meter_order == (Period.SHARP, Period.PEAK, Period.FLAT, Period.VALLEY)


@settings(max_examples=100, deadline=None)
@given(
    meters=st.integers(1, 4),
    cycles=st.lists(
        st.tuples(st.integers(1, 240), st.lists(st.integers(0, 3_000), min_size=4, max_size=4)),
        min_size=1,
        max_size=24,
    ),
    in_utc=st.lists(st.booleans(), min_size=24, max_size=24),
    fen=st.integers(0, 2_000),
)
def test_meters_sharing_an_interval_bill_as_each_billed_afresh(
    *, meters: int, cycles: list[tuple[int, list[int]]], in_utc: list[bool], fen: int
) -> None:
    """The account turn bills a cycle's meters one after another over the same interval, whose
    time-of-use split is then worked out once and looked up (`tariffs.time_in_periods`). The
    chains and states are those of billing every reading with nothing remembered, whatever
    the sequence; some cycles' times are given in UTC (another wall clock, the same instants)."""
    policy = ConsumptionPolicy(TOU, max_power_w=100_000)
    runs = {}
    for afresh in (False, True):
        ledger = Ledger(OWNER)
        fund(ledger, fen=fen)
        states = {
            f"M{n}": ConsumptionState(
                MeterBilling(meter=f"M{n}", reg_wh=Wh(REG0), at=T0), AccountCharges()
            )
            for n in range(meters)
        }
        charges, when, regs = AccountCharges(), T0, dict.fromkeys(states, REG0)
        chains: list[tuple[Transfer, ...]] = []
        for number, (minutes, deltas) in enumerate(cycles):
            when += dt.timedelta(minutes=minutes)
            now = when.astimezone(dt.UTC) if in_utc[number] else when
            for meter, delta in zip(states, deltas, strict=False):
                if afresh:
                    tariffs._SPLITS.clear()
                regs[meter] += delta
                decided = bill_reading(
                    now,
                    reading(regs[meter], address=meter),
                    ConsumptionState(states[meter].meter, charges),
                    policy,
                    owner=OWNER,
                    pockets=Pockets.from_book(ledger.book, OWNER),
                    source=SOURCE,
                )
                ledger.post(decided.decisions.transfers)
                chains.append(decided.decisions.transfers)
                states[meter], charges = decided.state, decided.state.charges
        ledger.assert_sound()
        runs[afresh] = (chains, states, charges)
    assert runs[False] == runs[True]
