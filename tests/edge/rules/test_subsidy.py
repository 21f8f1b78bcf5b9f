"""Monthly subsidy: due time, expire-then-issue at month end, carry-over caps, catch-up after
downtime, exactly once per period under any clock, checked on a real book."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.rules.consumption import (
    AccountCharges,
    ConsumptionPolicy,
    ConsumptionState,
    MeterBilling,
    bill_reading,
)
from edge.rules.decisions import AlarmKind, Decided
from edge.rules.errors import PolicyError
from edge.rules.pockets import Pockets
from edge.rules.subsidy import (
    MonthEnd,
    SubsidyAccount,
    SubsidyPolicy,
    SubsidyState,
    SubsidyTable,
    run_subsidy,
)
from edge.rules.tariffs import FlatTariff
from edge.rules.times import month_key
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.book import Outcome
from ledger.ids import derive_id
from ledger.transfers import Code
from ledger.units import Price, Wh
from tests.edge.rules.helpers import SOURCE, Ledger, at, reading
from tests.ledger.factories import CASH, transfer

OWNER = "A1"
ACCOUNT = SubsidyAccount(OWNER, account_type="market", shop_category="food")
TABLE = SubsidyTable(by_type={"market": 30_000}, by_category={"food": 50_000})
POLICY = SubsidyPolicy(TABLE, issue_day=1, issue_at=dt.time(0, 5))


def run(
    ledger: Ledger, now: dt.datetime, state: SubsidyState, policy: SubsidyPolicy = POLICY
) -> Decided[SubsidyState]:
    wh = Pockets.from_book(ledger.book, OWNER).subsidy_wh
    decided = run_subsidy(now, ACCOUNT, state, wh, policy, source=SOURCE)
    # OK, not merely accepted: the rule itself never decides a booked transfer again (the book
    # would absorb a repeat as `exists`, which would hide the bug).
    assert all(o is Outcome.OK for o in ledger.post(decided.decisions.transfers))
    ledger.assert_sound()
    return decided


def use_subsidy(ledger: Ledger, wh: int) -> None:
    """Consume subsidy directly (the consumption rule is exercised in the property below)."""
    n = len(ledger.history)
    ledger.post(
        [
            transfer(
                90_000 + n,
                pocket_id(OWNER, Pocket.SUBSIDY),
                system_id(System.SUBSIDY_USED),
                wh,
                Code.CONSUME,
                # A meter of its own per use keeps the register invariant meaningful.
                refs={"meter": f"U{n}", "reg_from": 0, "reg_to": wh, "energy_wh": wh},
            )
        ]
    )


def subsidy_left(ledger: Ledger) -> int:
    return Pockets.from_book(ledger.book, OWNER).subsidy_wh


def test_issued_at_the_due_time_once() -> None:
    ledger = Ledger(OWNER)
    early = run(ledger, at(2026, 11, 1, 0, 4), SubsidyState())
    assert early.decisions.empty
    decided = run(ledger, at(2026, 11, 1, 0, 5), early.state)
    [issue] = decided.decisions.transfers
    assert (issue.debit, issue.credit, issue.amount) == ("sys:subsidy_issued", "A1:subsidy", 50_000)
    assert issue.code is Code.SUBSIDY_ISSUE
    assert issue.refs == {"period": "2026-11"}
    assert issue.id == derive_id("subsidy_issue", OWNER, "2026-11")
    assert issue.time == "2026-11-01T00:05:00+08:00"
    assert decided.state.issued == {"2026-11"}
    again = run(ledger, at(2026, 11, 17, 9), decided.state)
    assert again.decisions.empty


def test_month_end_clear_expires_before_the_new_issue() -> None:
    ledger = Ledger(OWNER)
    state = run(ledger, at(2026, 11, 1, 8), SubsidyState()).state
    use_subsidy(ledger, 20_000)
    decided = run(ledger, at(2026, 12, 1, 0, 30), state)
    expire, issue = decided.decisions.transfers
    assert (expire.code, expire.debit, expire.credit, expire.amount) == (
        Code.SUBSIDY_EXPIRE,
        "A1:subsidy",
        "sys:subsidy_expired",
        30_000,
    )
    assert expire.refs == {"period": "2026-11"}
    assert expire.time == "2026-12-01T00:00:00+08:00"
    assert (issue.refs["period"], issue.amount) == ("2026-12", 50_000)
    assert subsidy_left(ledger) == 50_000
    assert decided.state.closed == {"2026-11"}


def test_month_end_before_the_issue_day_leaves_a_gap() -> None:
    ledger = Ledger(OWNER)
    policy = SubsidyPolicy(TABLE, issue_day=5, issue_at=dt.time(8))
    state = run(ledger, at(2026, 11, 5, 8), SubsidyState(), policy).state
    decided = run(ledger, at(2026, 12, 2), state, policy)
    assert [t.code for t in decided.decisions.transfers] == [Code.SUBSIDY_EXPIRE]
    assert subsidy_left(ledger) == 0
    decided = run(ledger, at(2026, 12, 5, 8), decided.state, policy)
    assert [t.code for t in decided.decisions.transfers] == [Code.SUBSIDY_ISSUE]


def test_carry_over_without_and_with_a_cap() -> None:
    ledger = Ledger(OWNER)
    carry = SubsidyPolicy(TABLE, month_end=MonthEnd.CARRY_OVER)
    state = run(ledger, at(2026, 11, 1, 1), SubsidyState(), carry).state
    use_subsidy(ledger, 10_000)
    state = run(ledger, at(2026, 12, 1, 1), state, carry).state
    assert subsidy_left(ledger) == 90_000  # 40 000 carried + 50 000 new

    capped = SubsidyPolicy(TABLE, month_end=MonthEnd.CARRY_OVER, carry_cap_wh=25_000)
    decided = run(ledger, at(2027, 1, 1, 1), state, capped)
    expire, _ = decided.decisions.transfers
    assert (expire.amount, expire.refs["period"]) == (65_000, "2026-12")
    assert subsidy_left(ledger) == 75_000  # 25 000 carried + 50 000 new


def test_boot_on_the_20th_issues_the_missed_current_period() -> None:
    ledger = Ledger(OWNER)
    decided = run(ledger, at(2026, 11, 20, 14), SubsidyState())
    [issue] = decided.decisions.transfers
    assert issue.time == "2026-11-01T00:05:00+08:00"  # stamped with when it was due
    assert decided.decisions.alarms == ()


def test_periods_missed_entirely_are_not_issued_but_reported() -> None:
    ledger = Ledger(OWNER)
    state = run(ledger, at(2026, 8, 3), SubsidyState()).state
    # Off from August to November the 20th.
    decided = run(ledger, at(2026, 11, 20), state)
    expire, issue = decided.decisions.transfers
    assert (expire.refs["period"], expire.amount) == ("2026-08", 50_000)
    assert issue.refs["period"] == "2026-11"
    [alarm] = decided.decisions.alarms
    assert alarm.kind is AlarmKind.SUBSIDY_MISSED
    assert alarm.message.startswith("2 subsidy period(s) after 2026-08")
    assert decided.state.issued == {"2026-08", "2026-11"}


def test_clock_jumping_years_ahead_and_back_does_not_stop_subsidies() -> None:
    ledger = Ledger(OWNER)
    state = run(ledger, at(2026, 11, 2), SubsidyState()).state
    state = run(ledger, at(2036, 5, 2), state).state  # a wild clock: one wrong period, not 114
    assert state.issued == {"2026-11", "2036-05"}
    state = run(ledger, at(2026, 11, 3), state).state  # back: nothing twice
    state = run(ledger, at(2026, 12, 1, 1), state).state  # real December still comes
    assert "2026-12" in state.issued
    issues = [t for t in ledger.history if t.code is Code.SUBSIDY_ISSUE]
    assert sorted(str(t.refs["period"]) for t in issues) == ["2026-11", "2026-12", "2036-05"]


def test_issue_day_clamps_to_the_end_of_short_months() -> None:
    policy = SubsidyPolicy(TABLE, issue_day=31, issue_at=dt.time(12))
    assert policy.due("2027-02", at(2027, 2, 1).tzinfo) == at(2027, 2, 28, 12)
    assert policy.due("2028-02", at(2028, 2, 1).tzinfo) == at(2028, 2, 29, 12)


def test_amount_hook_is_replaceable() -> None:
    assert TABLE(ACCOUNT, "2026-11") == 50_000
    assert TABLE(SubsidyAccount("B", "market"), "2026-11") == 30_000
    assert TABLE(SubsidyAccount("C", "office", "cafe"), "2026-11") == 0

    def winter_bonus(account: SubsidyAccount, period: str) -> int:
        return 80_000 if period.endswith(("-12", "-01", "-02")) else 40_000

    ledger = Ledger(OWNER)
    decided = run(ledger, at(2026, 12, 3), SubsidyState(), SubsidyPolicy(winter_bonus))
    assert decided.decisions.transfers[0].amount == 80_000
    # A zero amount issues nothing but counts the period as done.
    nothing = run(ledger, at(2027, 1, 3), SubsidyState(), SubsidyPolicy(lambda a, p: 0))
    assert nothing.decisions.transfers == ()
    assert nothing.state.issued == {"2027-01"}
    with pytest.raises(PolicyError):
        run(ledger, at(2027, 2, 3), SubsidyState(), SubsidyPolicy(lambda a, p: -1))


def test_policy_validation() -> None:
    with pytest.raises(PolicyError):
        SubsidyPolicy(TABLE, issue_day=0)
    with pytest.raises(PolicyError):
        SubsidyPolicy(TABLE, carry_cap_wh=100)  # a cap only means something when carrying over


def test_state_rebuilt_from_the_chain_issues_nothing_twice() -> None:
    ledger = Ledger(OWNER)
    state = run(ledger, at(2026, 10, 2), SubsidyState()).state
    state = run(ledger, at(2026, 11, 2), state).state
    rebuilt = SubsidyState.from_transfers(OWNER, ledger.history)
    assert rebuilt == state
    assert run(ledger, at(2026, 11, 20), rebuilt).decisions.empty


# -- properties ---------------------------------------------------------------------------------

# Steps: move the clock by any amount, back or forward, sometimes far; use some energy; and now
# and then lose the state and rebuild it from the chain (a crash between book and state).
moves = st.one_of(
    st.integers(-90 * 24 * 60, 90 * 24 * 60),
    st.integers(-12 * 60, 12 * 60),
    st.sampled_from([-400 * 24 * 60, 400 * 24 * 60]),
)
steps = st.lists(
    st.tuples(moves, st.integers(0, 30_000), st.integers(0, 9)), min_size=1, max_size=30
)
policies = st.sampled_from(
    [
        POLICY,
        SubsidyPolicy(TABLE, issue_day=31, issue_at=dt.time(23, 30)),
        SubsidyPolicy(TABLE, issue_day=15, month_end=MonthEnd.CARRY_OVER),
        SubsidyPolicy(TABLE, issue_day=2, month_end=MonthEnd.CARRY_OVER, carry_cap_wh=20_000),
    ]
)


@pytest.mark.slow  # 300 examples of month-long clocks
@settings(max_examples=300, deadline=None)
@given(steps=steps, policy=policies)
def test_exactly_once_under_any_clock(
    steps: list[tuple[int, int, int]], policy: SubsidyPolicy
) -> None:
    ledger = Ledger(OWNER)
    ledger.post([transfer(1, CASH, pocket_id(OWNER, Pocket.PREPAID), 10**9, Code.RECHARGE)])
    tariff = ConsumptionPolicy(FlatTariff(Price(8_000)), max_power_w=10**6)
    now = at(2026, 11, 10, 12)
    meter = ConsumptionState(MeterBilling.first(reading(0), now), AccountCharges())
    state, reg, eligible = SubsidyState(), 0, set()
    for minutes, use, crash in steps:
        now += dt.timedelta(minutes=minutes)
        reg += use
        billed = bill_reading(
            now,
            reading(reg),
            meter,
            tariff,
            owner=OWNER,
            pockets=Pockets.from_book(ledger.book, OWNER),
            source=SOURCE,
        )
        ledger.post(billed.decisions.transfers)
        meter = billed.state
        if crash == 0:
            state = SubsidyState.from_transfers(OWNER, ledger.history)
        state = run(ledger, now, state, policy).state  # posts and checks the invariants

        current = month_key(now)
        if now >= policy.due(current, now.tzinfo):
            eligible.add(current)
            assert current in state.issued  # caught up: never left waiting
        issued = {str(t.refs["period"]) for t in ledger.history if t.code is Code.SUBSIDY_ISSUE}
        assert issued <= eligible  # never a period whose due time no `now` has reached
        assert subsidy_left(ledger) >= 0


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 20 * 24 * 60), st.integers(0, 40_000)), max_size=30),
    policy=policies,
)
def test_pocket_holds_at_most_what_the_policy_allows(
    steps: list[tuple[int, int]], policy: SubsidyPolicy
) -> None:
    """With a clock that only moves forwards: `clear` leaves at most one month's subsidy, a cap
    at most the cap plus one month's, and every month end runs exactly once."""
    ledger = Ledger(OWNER)
    now, state = at(2026, 11, 1), SubsidyState()
    for minutes, use in steps:
        now += dt.timedelta(minutes=minutes)
        use_subsidy(ledger, min(use, subsidy_left(ledger))) if use and subsidy_left(
            ledger
        ) else None
        state = run(ledger, now, state, policy).state
        if policy.month_end is MonthEnd.CLEAR:
            assert subsidy_left(ledger) <= 50_000
        elif policy.carry_cap_wh is not None:
            assert subsidy_left(ledger) <= policy.carry_cap_wh + 50_000
        assert state.closed == {p for p in state.issued if p < month_key(now)}
    expiries = [str(t.refs["period"]) for t in ledger.history if t.code is Code.SUBSIDY_EXPIRE]
    assert len(expiries) == len(set(expiries))
    assert Wh(subsidy_left(ledger)) >= 0
