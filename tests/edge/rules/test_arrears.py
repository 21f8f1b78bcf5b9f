"""Arrears: at zero or at a scheduled cut-off, never in friendly hours, on holidays or for
keep-power accounts; closed again once back in credit."""

from __future__ import annotations

import datetime as dt

from edge.rules.arrears import (
    ArrearsAccount,
    ArrearsMode,
    ArrearsPolicy,
    ArrearsState,
    judge_arrears,
)
from edge.rules.decisions import AlarmKind, RelayAction, RelayCause, RelayCommand
from edge.rules.pockets import Pockets
from ledger.units import Fen, Wh
from tests.edge.rules.helpers import at

EMPTY = Pockets()
FUNDED = Pockets(prepaid_fen=Fen(500))
AT_ZERO = ArrearsPolicy()
SCHEDULED = ArrearsPolicy(ArrearsMode.SCHEDULED, cut_off=dt.time(10))


def account(pockets: Pockets = EMPTY, **fields: object) -> ArrearsAccount:
    return ArrearsAccount("A1", ("M1", "M2"), pockets, **fields)  # type: ignore[arg-type]


def commands(actions: tuple[RelayAction, ...]) -> list[tuple[str, RelayCommand]]:
    assert all(a.cause is RelayCause.ARREARS for a in actions)
    return [(a.meter, a.command) for a in actions]


def test_in_arrears_means_nothing_left_or_a_debt() -> None:
    assert account().in_arrears
    assert not account(Pockets(subsidy_wh=Wh(1))).in_arrears
    assert not account(Pockets(grace_wh=Wh(1))).in_arrears
    assert account(Pockets(prepaid_fen=Fen(-100), credit_limit_fen=Fen(100))).in_arrears
    assert not account(Pockets(prepaid_fen=Fen(-99), credit_limit_fen=Fen(100))).in_arrears
    assert account(Pockets(prepaid_fen=Fen(500), debt_fen=Fen(1))).in_arrears


def test_at_zero_trips_every_meter_at_once_and_closes_after_a_top_up() -> None:
    tripped = judge_arrears(at(2026, 11, 3, 14), account(), ArrearsState(), AT_ZERO)
    assert commands(tripped.decisions.relays) == [
        ("M1", RelayCommand.TRIP),
        ("M2", RelayCommand.TRIP),
    ]
    assert tripped.decisions.alarms[0].kind is AlarmKind.ARREARS_TRIP
    assert tripped.state.tripped
    # Still empty: nothing more to do.
    assert judge_arrears(at(2026, 11, 3, 15), account(), tripped.state, AT_ZERO).decisions.empty
    # A top-up: closed, even in friendly hours.
    closed = judge_arrears(at(2026, 11, 3, 23), account(FUNDED), tripped.state, AT_ZERO)
    assert commands(closed.decisions.relays) == [
        ("M1", RelayCommand.CLOSE),
        ("M2", RelayCommand.CLOSE),
    ]
    assert closed.decisions.alarms[0].kind is AlarmKind.ARREARS_CLOSE
    assert not closed.state.tripped


def test_a_debt_keeps_the_relay_open_until_paid_back() -> None:
    state = ArrearsState(tripped=True)
    topped_up_not_yet_repaid = account(Pockets(prepaid_fen=Fen(500), debt_fen=Fen(40)))
    assert judge_arrears(
        at(2026, 11, 3, 14), topped_up_not_yet_repaid, state, AT_ZERO
    ).decisions.empty
    repaid = account(FUNDED)
    assert judge_arrears(at(2026, 11, 3, 14), repaid, state, AT_ZERO).decisions.relays


def test_never_in_friendly_hours_or_on_holidays() -> None:
    for night in (at(2026, 11, 3, 20), at(2026, 11, 3, 23, 59), at(2026, 11, 4, 7, 59)):
        assert judge_arrears(night, account(), ArrearsState(), AT_ZERO).decisions.empty
    assert judge_arrears(at(2026, 11, 4, 8), account(), ArrearsState(), AT_ZERO).state.tripped
    holidays = ArrearsPolicy(holidays=frozenset({dt.date(2026, 10, 1)}))
    assert judge_arrears(at(2026, 10, 1, 12), account(), ArrearsState(), holidays).decisions.empty
    custom = ArrearsPolicy(friendly_hours=())
    assert judge_arrears(at(2026, 11, 3, 23), account(), ArrearsState(), custom).state.tripped


def test_keep_power_accounts_are_never_tripped_and_are_released() -> None:
    keep = account(keep_power=True)
    assert judge_arrears(at(2026, 11, 3, 14), keep, ArrearsState(), AT_ZERO).decisions.empty
    released = judge_arrears(at(2026, 11, 3, 14), keep, ArrearsState(tripped=True), AT_ZERO)
    assert commands(released.decisions.relays)[0] == ("M1", RelayCommand.CLOSE)


def test_scheduled_cut_off_once_a_day() -> None:
    state = ArrearsState()
    before = judge_arrears(at(2026, 11, 3, 9, 59), account(), state, SCHEDULED)
    assert before.decisions.empty
    # At the cut-off the account has money: the day's cut-off has run for it.
    fine = judge_arrears(at(2026, 11, 3, 10), account(FUNDED), state, SCHEDULED)
    assert fine.decisions.empty
    assert fine.state.cut_off_done == dt.date(2026, 11, 3)
    # It runs dry at 11:00: it waits for tomorrow's cut-off.
    assert judge_arrears(at(2026, 11, 3, 11), account(), fine.state, SCHEDULED).decisions.empty
    tomorrow = judge_arrears(at(2026, 11, 4, 10, 1), account(), fine.state, SCHEDULED)
    assert tomorrow.state.tripped


def test_scheduled_cut_off_missed_while_off_runs_later_that_day() -> None:
    decided = judge_arrears(at(2026, 11, 3, 15), account(), ArrearsState(), SCHEDULED)
    assert decided.state.tripped


def test_scheduled_cut_off_in_friendly_hours_waits_for_them_to_end() -> None:
    early = ArrearsPolicy(ArrearsMode.SCHEDULED, cut_off=dt.time(6))
    assert judge_arrears(at(2026, 11, 3, 6), account(), ArrearsState(), early).decisions.empty
    assert judge_arrears(at(2026, 11, 3, 8), account(), ArrearsState(), early).state.tripped
