"""Each ledger invariant check (docs/architecture.md §5.6) catches the violation it exists for,
and passes a sound book."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.book import Balance, replay
from ledger.chain import Chain
from ledger.errors import InvariantViolated
from ledger.invariants import (
    assert_ledger_sound,
    check_balances_sum_to_zero,
    check_charges_never_drift,
    check_energy_matches_registers,
    check_no_command_twice,
    check_payments_credited_once,
    check_prefix_unchanged,
    check_subsidy_once_per_period,
    ledger_violations,
)
from ledger.transfers import Code, Kind, Transfer
from tests.ledger.factories import (
    CASH,
    ISSUED,
    SALES,
    USED,
    prepaid,
    sample_transfers,
    subsidy,
    transfer,
)


def test_sample_history_is_sound() -> None:
    transfers = sample_transfers()
    assert_ledger_sound(transfers, replay(transfers).balances(), paid_orders=["WX-0001"])


def test_balances_not_summing_to_zero() -> None:
    broken = {prepaid(): Balance(credits_posted=5), CASH: Balance(debits_posted=4)}
    assert check_balances_sum_to_zero(broken) == ["fen: posted balances sum to 1, pending to 0"]


def test_duplicate_transfer_and_assert_raises() -> None:
    transfers = sample_transfers()
    twice = [*transfers, transfers[0]]
    with pytest.raises(InvariantViolated, match="applied twice"):
        assert_ledger_sound(twice, replay(transfers).balances())


def test_command_applied_twice() -> None:
    leg = transfer(1, CASH, prepaid(), 100, Code.RECHARGE, refs={"command": "C-1"})
    again = dataclasses.replace(leg, id=2)
    assert check_no_command_twice([leg]) == []
    assert check_no_command_twice([leg, again]) == [
        "command C-1 applied twice (recharge sys:cash_in_transit->A0001:prepaid)"
    ]


def test_payment_credited_twice_or_never() -> None:
    pay = transfer(1, CASH, prepaid(), 100, Code.RECHARGE, refs={"payment": "P1"})
    pending = transfer(
        2, CASH, prepaid(), 50, Code.RECHARGE, kind=Kind.PENDING, refs={"payment": "P2"}
    )
    posted = transfer(
        3, CASH, prepaid(), 50, Code.RECHARGE, kind=Kind.POST, pending_id=2, refs={"payment": "P2"}
    )
    assert check_payments_credited_once([pay, pending, posted], ["P1", "P2"]) == []
    assert check_payments_credited_once([pay, dataclasses.replace(pay, id=9)]) == [
        "payment P1 credited 2 times"
    ]
    assert check_payments_credited_once([pay], ["P1", "P3"]) == ["payment P3 never credited"]


def test_subsidy_issued_twice_in_one_period() -> None:
    issue = transfer(1, ISSUED, subsidy(), 100, Code.SUBSIDY_ISSUE, refs={"period": "2026-11"})
    next_month = dataclasses.replace(issue, id=2, refs={"period": "2026-12"})
    assert check_subsidy_once_per_period([issue, next_month]) == []
    assert len(check_subsidy_once_per_period([issue, dataclasses.replace(issue, id=3)])) == 1


def _consume(id: int, start: int, end: int, energy: int) -> object:
    refs = {"meter": "M1", "reg_from": start, "reg_to": end, "energy_wh": energy}
    return transfer(id, subsidy(), USED, max(energy, 1), Code.CONSUME, refs=refs)


def test_energy_billed_equals_register_delta() -> None:
    ok = [_consume(1, 0, 100, 100), _consume(2, 100, 250, 150)]
    assert check_energy_matches_registers(ok) == []  # type: ignore[arg-type]
    short = [_consume(1, 0, 100, 90)]
    assert check_energy_matches_registers(short) == ["meter M1: 0..100 billed 90 Wh, not 100"]  # type: ignore[arg-type]
    gap = [_consume(1, 0, 100, 100), _consume(2, 120, 200, 80)]
    assert check_energy_matches_registers(gap) == [
        "meter M1: registers jump from 100 to 120 unbilled"
    ]  # type: ignore[arg-type]


def test_a_water_meters_litres_are_checked_against_its_span() -> None:
    water = pocket_id("A0001", Pocket.WATER_SUBSIDY)
    used = system_id(System.WATER_SUBSIDY_USED)

    def leg(id: int, start: int, end: int, litres: int) -> Transfer:
        refs = {"meter": "W1", "reg_from": start, "reg_to": end, "volume_l": litres}
        return transfer(id, water, used, litres, Code.CONSUME, refs=refs)

    ok = [leg(1, 0, 100, 100), _consume(2, 0, 100, 100), leg(3, 100, 130, 30)]
    assert check_energy_matches_registers(ok) == []  # type: ignore[list-item]
    assert check_energy_matches_registers([leg(1, 0, 100, 90)]) == [
        "meter W1: 0..100 billed 90 L, not 100"
    ]


def test_charges_drifting_from_cumulative_cost() -> None:
    # 0.6 fen exact, charged 1 fen: fine (rounds to 1). Then 0.6 more (1.2 total) charged 1 more.
    first = transfer(1, prepaid(), SALES, 1, Code.CONSUME, refs={"cost_cum": 60_000})
    drift = transfer(2, prepaid(), SALES, 1, Code.CONSUME, refs={"cost_cum": 120_000})
    assert check_charges_never_drift([first]) == []
    assert check_charges_never_drift([first, drift]) == [
        "account A0001: charged 2 fen, cumulative cost rounds to 1"
    ]


def test_acknowledged_prefix_changed() -> None:
    chain = Chain("edge-1")
    entries = [chain.append(t) for t in sample_transfers()]
    assert check_prefix_unchanged(entries[:3], entries) == []
    edited = [*entries[:1], dataclasses.replace(entries[1], hash=bytes(32)), *entries[2:]]
    assert check_prefix_unchanged(entries[:3], edited) == ["acknowledged entry 2 changed"]
    assert check_prefix_unchanged(entries, entries[:2]) == ["chain shrank from 6 to 2 entries"]


def test_ledger_violations_lists_everything() -> None:
    transfers = sample_transfers()
    assert ledger_violations(transfers, replay(transfers).balances(), ["WX-9"]) == [
        "payment WX-9 never credited"
    ]
