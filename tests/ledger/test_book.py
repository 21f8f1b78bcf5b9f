"""TigerBeetle semantics of the book, one rule at a time."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.accounts import Account, Pocket, pocket_id
from ledger.book import Balance, Book, Outcome, replay
from ledger.errors import InvalidValue, TransferRefused
from ledger.transfers import Kind
from tests.ledger.factories import CASH, SALES, accounts, prepaid, subsidy, transfer


@pytest.fixture
def book() -> Book:
    b = Book(accounts("A0001", "A0002"))
    b.post(transfer(1, CASH, prepaid(), 1000))
    return b


def test_same_id_same_content_is_a_no_op(book: Book) -> None:
    assert book.submit([transfer(1, CASH, prepaid(), 1000)]) == [Outcome.EXISTS]
    assert book.balance(prepaid()).posted == 1000


def test_same_id_other_content_is_refused_and_changes_nothing(book: Book) -> None:
    assert book.submit([transfer(1, CASH, prepaid(), 999)]) == [Outcome.ID_CONFLICT]
    assert book.balance(prepaid()).posted == 1000
    with pytest.raises(TransferRefused) as refused:
        book.post(transfer(1, CASH, prepaid("A0002"), 1000))
    assert refused.value.outcome is Outcome.ID_CONFLICT


def test_floor_refuses_overdraft(book: Book) -> None:
    assert book.submit([transfer(2, prepaid(), SALES, 1001)]) == [Outcome.EXCEEDS_FLOOR]
    assert book.submit([transfer(2, prepaid(), SALES, 1000)]) == [Outcome.OK]
    assert book.balance(prepaid()).posted == 0


def test_credit_limit_is_the_floor() -> None:
    book = Book(accounts("A0001", credit_limit=500))
    assert book.submit([transfer(1, prepaid(), SALES, 500)]) == [Outcome.OK]
    assert book.submit([transfer(2, prepaid(), SALES, 1)]) == [Outcome.EXCEEDS_FLOOR]
    assert book.balance(prepaid()).posted == -500


def test_only_prepaid_has_a_credit_limit() -> None:
    with pytest.raises(InvalidValue):
        Account.for_id(subsidy(), credit_limit=10)


def test_unknown_account(book: Book) -> None:
    stranger = pocket_id("Z9", Pocket.PREPAID)
    assert book.submit([transfer(2, CASH, stranger, 1)]) == [Outcome.ACCOUNT_NOT_FOUND]


def test_linked_chain_is_all_or_nothing(book: Book) -> None:
    chain = [
        transfer(2, CASH, prepaid(), 100, linked=True),
        transfer(3, prepaid(), SALES, 5000),  # overdraws: the whole chain fails
    ]
    assert book.submit(chain) == [Outcome.LINKED_EVENT_FAILED, Outcome.EXCEEDS_FLOOR]
    assert book.get(2) is None
    assert book.balance(prepaid()).posted == 1000
    chain[1] = transfer(3, prepaid(), SALES, 1100)  # uses the 100 credited just before
    assert book.submit(chain) == [Outcome.OK, Outcome.OK]
    assert book.balance(prepaid()).posted == 0


def test_a_batch_ending_inside_a_chain_fails_the_chain(book: Book) -> None:
    outcomes = book.submit(
        [transfer(2, CASH, prepaid(), 1), transfer(3, CASH, prepaid(), 1, linked=True)]
    )
    assert outcomes == [Outcome.OK, Outcome.LINKED_CHAIN_OPEN]
    assert book.get(3) is None


def test_pending_reserves_then_post_moves_part_and_releases_rest(book: Book) -> None:
    book.post(transfer(2, prepaid(), SALES, 800, kind=Kind.PENDING))
    assert book.balance(prepaid()) == Balance(debits_pending=800, credits_posted=1000)
    assert book.submit([transfer(3, prepaid(), SALES, 300)]) == [Outcome.EXCEEDS_FLOOR]
    book.post(transfer(4, prepaid(), SALES, 600, kind=Kind.POST, pending_id=2))
    assert book.balance(prepaid()) == Balance(debits_posted=600, credits_posted=1000)
    again = transfer(5, prepaid(), SALES, 600, kind=Kind.POST, pending_id=2)
    assert book.submit([again]) == [Outcome.PENDING_ALREADY_POSTED]


def test_void_releases_everything_once(book: Book) -> None:
    book.post(transfer(2, prepaid(), SALES, 800, kind=Kind.PENDING))
    assert book.submit([transfer(3, prepaid(), SALES, 799, kind=Kind.VOID, pending_id=2)]) == [
        Outcome.VOID_AMOUNT_MISMATCH
    ]
    book.post(transfer(3, prepaid(), SALES, 800, kind=Kind.VOID, pending_id=2))
    assert book.balance(prepaid()).available == 1000
    post = transfer(4, prepaid(), SALES, 800, kind=Kind.POST, pending_id=2)
    assert book.submit([post]) == [Outcome.PENDING_ALREADY_VOIDED]


def test_post_must_match_the_pending_transfer(book: Book) -> None:
    book.post(transfer(2, prepaid(), SALES, 800, kind=Kind.PENDING))
    cases = [
        (
            transfer(3, prepaid(), SALES, 801, kind=Kind.POST, pending_id=2),
            Outcome.AMOUNT_EXCEEDS_PENDING,
        ),
        (
            transfer(3, prepaid("A0002"), SALES, 8, kind=Kind.POST, pending_id=2),
            Outcome.PENDING_MISMATCH,
        ),
        (
            transfer(3, prepaid(), SALES, 8, kind=Kind.POST, pending_id=99),
            Outcome.PENDING_NOT_FOUND,
        ),
        (transfer(3, CASH, prepaid(), 8, kind=Kind.POST, pending_id=1), Outcome.PENDING_NOT_FOUND),
    ]
    for t, expected in cases:
        assert book.submit([t]) == [expected]
    assert book.balance(prepaid()).debits_pending == 800


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 0},
        {"amount": 1.5},
        {"amount": 2**53},
        {"id": 0},
        {"id": 2**128},
        {"credit": CASH},
        {"credit": subsidy()},  # Wh account in a fen transfer
        {"refs": {"Bad-Key": 1}},
        {"refs": {"x": 1.5}},
        {"kind": Kind.POST},  # no pending id
        {"time": "\ud800"},
    ],
)
def test_malformed_transfers_are_refused_at_construction(change: dict[str, object]) -> None:
    with pytest.raises(InvalidValue):
        dataclasses.replace(transfer(7, CASH, prepaid(), 1), **change)  # type: ignore[arg-type]


def test_replay_rebuilds_the_same_balances(book: Book) -> None:
    book.post(
        transfer(2, prepaid(), SALES, 400, kind=Kind.PENDING, linked=True),
        transfer(3, CASH, prepaid("A0002"), 50),
    )
    book.post(transfer(4, prepaid(), SALES, 400, kind=Kind.POST, pending_id=2))
    transfers = [book.get(i) for i in range(1, 5)]
    rebuilt = replay(t for t in transfers if t is not None)
    assert rebuilt.balances() == {a: b for a, b in book.balances().items() if b != Balance()}
