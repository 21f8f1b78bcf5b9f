"""Low-balance alarms: by amount, energy or days left; once per account per day at the alarm
time; grouped by building, floor and shop."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.rules.decisions import AlarmKind
from edge.rules.low_balance import (
    BalanceView,
    LowBalancePolicy,
    LowBalanceState,
    Place,
    check_low_balance,
    render,
)
from edge.rules.pockets import Pockets
from ledger.units import Fen, Price, Wh
from tests.edge.rules.helpers import at

PRICE = Price(8_000)  # 1 fen buys 12.5 Wh


def view(
    owner: str, place: Place, fen: int, subsidy: int = 0, days: tuple[int, ...] = ()
) -> BalanceView:
    return BalanceView(owner, place, Pockets(Wh(subsidy), Fen(fen)), PRICE, days)


def test_energy_left_and_days_left() -> None:
    v = view("A1", Place("B1", "F1", "101"), fen=800, subsidy=2_000, days=(4_000, 8_000))
    assert v.energy_left_wh == 2_000 + 10_000
    assert v.days_left == 2.0


def test_thresholds_each_raise_an_alarm() -> None:
    place = Place("B1", "F1", "101")
    now = at(2026, 11, 3, 9)
    by_amount = LowBalancePolicy(below_fen=1_000)
    by_energy = LowBalancePolicy(below_wh=5_000)
    by_days = LowBalancePolicy(below_days=3)
    low = view("A1", place, fen=300, days=(2_000, 2_000))  # 3 750 Wh, 1.9 days
    high = view("A2", place, fen=5_000, days=(2_000,))  # 62 500 Wh, 31 days
    for policy in (by_amount, by_energy, by_days):
        result = check_low_balance(now, [low, high], LowBalanceState(), policy)
        assert [a.account for a in result.decisions.alarms] == ["A1"]
        assert result.decisions.alarms[0].kind is AlarmKind.LOW_BALANCE
        assert result.decisions.alarms[0].shop == "101"
    # No consumption history: no forecast, no days alarm.
    idle = view("A3", place, fen=0)
    assert check_low_balance(now, [idle], LowBalanceState(), by_days).decisions.empty


def test_once_per_account_per_day_at_the_alarm_time() -> None:
    policy = LowBalancePolicy(alarm_at=at(2026, 1, 1, 9).time(), below_fen=1_000)
    low = view("A1", Place("B1", "F1", "101"), fen=300)
    early = check_low_balance(at(2026, 11, 3, 8, 59), [low], LowBalanceState(), policy)
    assert early.decisions.empty and early.state == LowBalanceState()
    first = check_low_balance(at(2026, 11, 3, 9), [low], early.state, policy)
    assert len(first.decisions.alarms) == 1
    again = check_low_balance(at(2026, 11, 3, 17), [low], first.state, policy)
    assert again.decisions.empty
    # A merchant added later in the day is still checked that day.
    newcomer = view("A9", Place("B1", "F2", "201"), fen=10)
    assert (
        len(
            check_low_balance(
                at(2026, 11, 3, 18), [low, newcomer], again.state, policy
            ).decisions.alarms
        )
        == 1
    )
    assert (
        len(check_low_balance(at(2026, 11, 4, 9), [low], again.state, policy).decisions.alarms) == 1
    )


def test_report_is_grouped_by_building_floor_and_shop() -> None:
    policy = LowBalancePolicy(below_fen=1_000)
    views = [
        view("A4", Place("B2", "F1", "101"), fen=1),
        view("A2", Place("B1", "F2", "205"), fen=2),
        view("A1", Place("B1", "F1", "102"), fen=3),
        view("A3", Place("B1", "F1", "101"), fen=4),
        view("A5", Place("B1", "F1", "101"), fen=5),
        view("A6", Place("B1", "F1", "103"), fen=99_999),  # not low
    ]
    result = check_low_balance(at(2026, 11, 3, 10), views, LowBalanceState(), policy)
    report = result.report
    assert [b.building for b in report] == ["B1", "B2"]
    assert [f.floor for f in report[0].floors] == ["F1", "F2"]
    assert [s.shop for s in report[0].floors[0].shops] == ["101", "102"]
    assert [line.owner for line in report[0].floors[0].shops[0].lines] == ["A3", "A5"]
    text = render(report)
    assert text.splitlines()[:3] == [
        "B1",
        "  F1",
        "    101 A3: low balance (amount): 0.04 yuan, 50 Wh left",
    ]


@settings(max_examples=200, deadline=None)
@given(
    accounts=st.lists(
        st.tuples(st.integers(0, 3_000), st.sampled_from([None, 0, 1, 2])), max_size=8
    ),
    hour=st.integers(0, 23),
)
def test_views_of_accounts_checked_today_change_nothing(
    accounts: list[tuple[int, int | None]], hour: int
) -> None:
    """The runtime builds views only for the accounts not yet checked today (a view reads the
    book); the rule decides exactly what it decides given every account's view."""
    now = at(2026, 11, 3, hour)
    days_ago = {None: None, **{n: now.date() - dt.timedelta(days=n) for n in (0, 1, 2)}}
    views = [view(f"A{n}", Place("B1", "F1", f"{n}"), fen) for n, (fen, _) in enumerate(accounts)]
    checked = {f"A{n}": days_ago[ago] for n, (_, ago) in enumerate(accounts) if ago is not None}
    state, policy = LowBalanceState(checked), LowBalancePolicy(below_fen=1_000)
    due = [v for v in views if checked.get(v.owner) != now.date()]
    assert check_low_balance(now, due, state, policy) == check_low_balance(
        now, views, state, policy
    )
