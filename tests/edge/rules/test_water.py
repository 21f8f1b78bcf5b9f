"""Water billed: a volume tariff (flat and tiered) paid free water → prepaid → credit → debt from
the account's one money, the water subsidy, valves in arrears, low-balance alarms on water, and
properties against a real book and the ledger invariants."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.drivers.reading import Reading
from edge.rules.arrears import ArrearsAccount, ArrearsPolicy, ArrearsState, judge_arrears
from edge.rules.commodities import WATER
from edge.rules.consumption import (
    AccountCharges,
    ConsumptionPolicy,
    ConsumptionState,
    MeterBilling,
    bill_reading,
)
from edge.rules.debt import repay
from edge.rules.decisions import AlarmKind, Decided, RelayCommand
from edge.rules.low_balance import (
    BalanceView,
    LowBalancePolicy,
    LowBalanceState,
    Place,
    check_low_balance,
)
from edge.rules.pockets import Pockets
from edge.rules.subsidy import (
    WATER_SUBSIDY,
    SubsidyAccount,
    SubsidyPolicy,
    SubsidyState,
    SubsidyTable,
    run_subsidy,
)
from edge.rules.tariffs import FlatTariff, Tier, TieredTariff
from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.ids import derive_id
from ledger.transfers import Code
from ledger.units import ExactCost, Price, Wh, exact_cost, fen_rounded
from tests.edge.rules.helpers import SOURCE, Ledger, at
from tests.ledger.factories import CASH, transfer

OWNER = "A1"
METER = "78330011223344"
FLAT = FlatTariff(Price(35_000))  # 3.50 CNY/m³: 1 L = 0.35 fen
TIERED = TieredTariff((Tier(Wh(10_000), Price(30_000)), Tier(None, Price(45_000))))
POLICY = ConsumptionPolicy(FLAT, max_power_w=2_500, commodity=WATER)
T0 = at(2026, 11, 1, 9)
REG0 = 500_000  # litres: 500 m³


def water(litres: int) -> Reading:
    return Reading(address=METER, volume_l=litres)


def start(reg: int = REG0) -> ConsumptionState:
    return ConsumptionState(MeterBilling.first(water(reg), T0, WATER), AccountCharges())


def fund(ledger: Ledger, *, fen: int = 0, free_l: int = 0) -> None:
    n = len(ledger.history) + 1
    if fen:
        ledger.post(
            [transfer(10_000 + n, CASH, pocket_id(OWNER, Pocket.PREPAID), fen, Code.RECHARGE)]
        )
    if free_l:
        issue = transfer(
            20_000 + n,
            system_id(System.WATER_SUBSIDY_ISSUED),
            pocket_id(OWNER, Pocket.WATER_SUBSIDY),
            free_l,
            Code.SUBSIDY_ISSUE,
            refs={"period": f"p{n}"},
        )
        ledger.post([issue])


def bill(
    ledger: Ledger,
    state: ConsumptionState,
    reg: int,
    when: dt.datetime,
    policy: ConsumptionPolicy = POLICY,
) -> Decided[ConsumptionState]:
    decided = bill_reading(
        when,
        water(reg),
        state,
        policy,
        owner=OWNER,
        pockets=Pockets.from_book(ledger.book, OWNER),
        source=SOURCE,
    )
    ledger.post(decided.decisions.transfers)
    return decided


def test_flat_volume_tariff_charges_prepaid_to_water_sales() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=10_000)
    decided = bill(ledger, start(), REG0 + 1_000, T0 + dt.timedelta(hours=1))  # 1 m³
    (leg,) = decided.decisions.transfers
    assert (leg.debit, leg.credit, leg.unit) == (
        pocket_id(OWNER, Pocket.PREPAID),
        system_id(System.WATER_SALES),
        Unit.FEN,
    )
    assert leg.amount == 350  # 3.50 CNY
    assert leg.refs["volume_l"] == 1_000 and "energy_wh" not in leg.refs
    assert (leg.refs["reg_from"], leg.refs["reg_to"]) == (REG0, REG0 + 1_000)
    assert leg.id == derive_id("consume", METER, REG0, REG0 + 1_000, "prepaid")
    assert decided.state.charges.month_used_l == 1_000 and decided.state.charges.month_used_wh == 0
    ledger.assert_sound()


def test_free_water_first_then_money_in_one_chain() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=10_000, free_l=300)
    decided = bill(ledger, start(), REG0 + 1_000, T0 + dt.timedelta(hours=1))
    free, paid = decided.decisions.transfers
    assert (free.debit, free.credit, free.unit, free.amount) == (
        pocket_id(OWNER, Pocket.WATER_SUBSIDY),
        system_id(System.WATER_SUBSIDY_USED),
        Unit.L,
        300,
    )
    assert free.linked and not paid.linked
    assert paid.amount == fen_rounded(exact_cost(Wh(700), Price(35_000)))  # 245 fen
    ledger.assert_sound()


def test_tiered_by_monthly_litres_apart_from_the_energy_tiers() -> None:
    ledger = Ledger(OWNER)
    fund(ledger, fen=100_000)
    policy = ConsumptionPolicy(TIERED, max_power_w=100_000, commodity=WATER)
    state = start()
    # The account already used 50 kWh this month: water's tiers do not see it.
    state = ConsumptionState(state.meter, AccountCharges(month="2026-11", month_used_wh=50_000))
    decided = bill(ledger, state, REG0 + 12_000, T0 + dt.timedelta(hours=1), policy)
    (leg,) = decided.decisions.transfers
    assert leg.refs["tariff"] == "tier1:10000@30000;tier2:2000@45000"
    assert leg.amount == 3_000 + 900  # 10 m³ at 3.00 CNY, 2 m³ at 4.50 CNY
    assert decided.state.charges.month_used_l == 12_000
    assert decided.state.charges.month_used_wh == 50_000
    ledger.assert_sound()


def test_no_money_books_water_as_debt_and_a_top_up_repays_it() -> None:
    ledger = Ledger(OWNER)
    decided = bill(ledger, start(), REG0 + 1_000, T0 + dt.timedelta(hours=1))
    (debt,) = decided.decisions.transfers
    assert (debt.debit, debt.credit, debt.amount) == (
        pocket_id(OWNER, Pocket.DEBT),
        system_id(System.WATER_SALES),
        350,
    )
    (alarm,) = decided.decisions.alarms
    assert alarm.kind is AlarmKind.UNPAID_ENERGY and "1000 L" in alarm.message
    pockets = Pockets.from_book(ledger.book, OWNER)
    assert pockets.debt_fen == 350
    fund(ledger, fen=1_000)
    pockets = Pockets.from_book(ledger.book, OWNER)
    back = repay(T0 + dt.timedelta(hours=2), OWNER, pockets, 0, source=SOURCE)
    assert back is not None and back.amount == 350
    ledger.post([back])
    assert Pockets.from_book(ledger.book, OWNER).debt_fen == 0
    ledger.assert_sound()


def test_water_and_energy_share_one_running_cost() -> None:
    """Money is money: the fen of both, in any order, equal their cumulative cost rounded once."""
    from edge.rules.commodities import ENERGY

    ledger = Ledger(OWNER)
    fund(ledger, fen=100_000)
    energy = ConsumptionPolicy(FlatTariff(Price(8_365)), max_power_w=20_000, commodity=ENERGY)
    meter_e = MeterBilling.first(Reading(address="M1", energy_wh=Wh(0)), T0, ENERGY)
    meter_w = MeterBilling.first(water(REG0), T0, WATER)
    charges = AccountCharges()
    when = T0
    for step in range(1, 8):
        when += dt.timedelta(minutes=15)
        e = bill_reading(
            when,
            Reading(address="M1", energy_wh=Wh(step * 130)),
            ConsumptionState(meter_e, charges),
            energy,
            owner=OWNER,
            pockets=Pockets.from_book(ledger.book, OWNER),
            source=SOURCE,
        )
        ledger.post(e.decisions.transfers)
        meter_e, charges = e.state.meter, e.state.charges
        w = bill(ledger, ConsumptionState(meter_w, charges), REG0 + step * 17, when)
        meter_w, charges = w.state.meter, w.state.charges
    ledger.assert_sound()


def test_water_subsidy_issues_litres_under_its_own_ids() -> None:
    ledger = Ledger(OWNER)
    policy = SubsidyPolicy(SubsidyTable(by_type={"merchant": 5_000}))
    account = SubsidyAccount(OWNER, "merchant")
    decided = run_subsidy(
        T0, account, SubsidyState(), Wh(0), policy, source=SOURCE, books=WATER_SUBSIDY
    )
    (issue,) = decided.decisions.transfers
    assert (issue.debit, issue.credit, issue.unit, issue.amount) == (
        system_id(System.WATER_SUBSIDY_ISSUED),
        pocket_id(OWNER, Pocket.WATER_SUBSIDY),
        Unit.L,
        5_000,
    )
    assert issue.id == derive_id("subsidy_issue", OWNER, "2026-11", "water")
    assert issue.id != derive_id("subsidy_issue", OWNER, "2026-11")  # the energy subsidy's
    ledger.post([issue])
    assert SubsidyState.from_transfers(OWNER, ledger.history, WATER_SUBSIDY).issued == {"2026-11"}
    assert SubsidyState.from_transfers(OWNER, ledger.history).issued == frozenset()
    # Month end: what is left is cleared to water_subsidy_expired.
    later = run_subsidy(
        at(2026, 12, 1, 1),
        account,
        decided.state,
        Wh(5_000),
        policy,
        source=SOURCE,
        books=WATER_SUBSIDY,
    )
    expire, again = later.decisions.transfers
    assert expire.credit == system_id(System.WATER_SUBSIDY_EXPIRED) and expire.amount == 5_000
    ledger.post([expire, again])
    ledger.assert_sound()


def test_valves_close_in_arrears_and_open_after_a_top_up() -> None:
    policy = ArrearsPolicy(friendly_hours=())
    dry = ArrearsAccount(OWNER, (METER,), Pockets(subsidy_wh=Wh(9_000)), water=True)
    tripped = judge_arrears(T0, dry, ArrearsState(), policy)
    (action,) = tripped.decisions.relays
    assert (action.meter, action.command) == (METER, RelayCommand.TRIP)  # the valve closes
    assert "water" in tripped.decisions.alarms[0].message
    # Free electricity does not keep the water on; free water does.
    free = ArrearsAccount(OWNER, (METER,), Pockets(water_subsidy_l=10), water=True)
    assert not free.in_arrears
    electric = ArrearsAccount(OWNER, ("M1",), Pockets(water_subsidy_l=10))
    assert electric.in_arrears
    paid = ArrearsAccount(OWNER, (METER,), Pockets(prepaid_fen=500), water=True)
    opened = judge_arrears(T0, paid, tripped.state, policy)
    (action,) = opened.decisions.relays
    assert action.command is RelayCommand.CLOSE and not opened.state.tripped


def test_low_balance_counts_water_left() -> None:
    view = BalanceView(
        OWNER,
        Place("B1", "1F", "S1"),
        Pockets(prepaid_fen=350, water_subsidy_l=200),
        Price(8_000),
        water_price=Price(35_000),
    )
    assert view.water_left_l == 200 + 1_000
    result = check_low_balance(T0, [view], LowBalanceState(), LowBalancePolicy(below_l=1_500))
    (alarm,) = result.decisions.alarms
    assert "water" in alarm.message and "1200 L" in alarm.message
    quiet = check_low_balance(T0, [view], LowBalanceState(), LowBalancePolicy(below_l=1_000))
    assert quiet.decisions.alarms == ()


@settings(max_examples=60, deadline=None)
@given(
    tiered=st.booleans(),
    steps=st.lists(
        st.tuples(st.integers(0, 900), st.sampled_from(["none", "fen", "free"])),
        min_size=1,
        max_size=40,
    ),
)
def test_water_billing_conserves_volume_and_money(
    tiered: bool, steps: list[tuple[int, str]]
) -> None:
    """Billed litres + unbilled = register delta; fen charged (paid or owed) = cumulative exact
    cost rounded once; the invariants hold, top-ups paying debt first."""
    ledger = Ledger(OWNER)
    policy = ConsumptionPolicy(TIERED if tiered else FLAT, max_power_w=1_000_000, commodity=WATER)
    state, reg, when = start(), REG0, T0
    for delta, top_up in steps:
        when += dt.timedelta(minutes=15)
        if top_up == "fen":
            fund(ledger, fen=137)
        elif top_up == "free":
            fund(ledger, free_l=90)
        pockets = Pockets.from_book(ledger.book, OWNER)
        repaid = ledger.book.balance(pocket_id(OWNER, Pocket.DEBT)).credits_posted
        back = repay(when, OWNER, pockets, repaid, source=SOURCE)
        if back is not None:
            ledger.post([back])
        reg += delta
        state = bill(ledger, state, reg, when, policy).state
    billed = sum(int(t.refs["volume_l"]) for t in ledger.history if t.code is Code.CONSUME)
    assert billed + state.meter.reg_wh - state.meter.billed_to == reg - REG0
    assert state.meter.reg_wh == reg
    charged = [t for t in ledger.history if t.code is Code.CONSUME and t.unit is Unit.FEN]
    # The exact cost of every litre money paid (or owes), from the priced parts on the legs.
    exact = sum(
        int(volume) * int(price)
        for t in charged
        for part in str(t.refs["tariff"]).split(";")
        for volume, price in [part.rpartition(":")[2].split("@")]
    )
    assert exact == state.charges.cost_cum
    assert sum(t.amount for t in charged) == fen_rounded(ExactCost(exact))
    ledger.assert_sound()
